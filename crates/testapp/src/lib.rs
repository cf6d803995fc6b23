//! `TestApp`: the user service, the meeting service and the gateway started
//! in-process through the same composition as `huddle all`
//! (`huddle::stack`), each test with its own databases (cloned from a
//! migrated template) and its own cache key prefix, so tests run in
//! parallel against real Postgres and Redis.

// A test harness: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cache_core::{Cache, CacheConfig, CacheMetrics};
use huddle_common::Shutdown;
use huddle_db::Database;
use huddle_testkit::{database::TestDatabase, proxy::TcpProxy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The user service's database handle; its checkout count is the number
    /// of database round trips the service made.
    pub user_db: Database,
    pub user_addr: std::net::SocketAddr,
    /// The meeting service's database handle (checkouts, direct queries).
    pub meeting_db: Database,
    pub meeting_addr: std::net::SocketAddr,
    pub meeting_outbox: huddle_serve::Outbox,
    pub meeting_cascade: meeting_service::Cascade,
    pub meeting_failpoints: std::sync::Arc<huddle_serve::Failpoints>,
    /// The chat service's database handle, outbox and streams.
    pub chat_db: Database,
    pub chat_addr: std::net::SocketAddr,
    pub chat_outbox: huddle_serve::Outbox,
    pub chat_hubs: chat_service::Hubs,
    /// A handle on the same Redis prefix the services use.
    pub cache: Cache,
    /// With `TestOptions::proxies`.
    pub proxies: Option<Proxies>,
    shutdown: Shutdown,
    /// What a replica needs to share this app's data: database URLs and
    /// the cache settings (same Redis, same prefix).
    user_db_url: String,
    meeting_db_url: String,
    chat_db_url: String,
    cache_config: CacheConfig,
    /// Dropped with the app that created them, not with its replicas.
    _databases: Option<(TestDatabase, TestDatabase, TestDatabase)>,
}

/// The databases a stack (and its replicas) use.
struct DbUrls {
    user: String,
    meeting: String,
    chat: String,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// What a test may change about its app.
#[derive(Default)]
pub struct TestOptions {
    /// A private Redis (e.g. one the test stops); default: the shared one.
    pub redis_url: Option<String>,
    /// Run the services' cache against this Redis Cluster instead.
    pub cluster_nodes: Vec<String>,
    /// Put a proxy the test can cut in front of user-service's Postgres,
    /// user-service (as the meeting service and gateway dial it) and
    /// meeting-service (as the gateway dials it): `TestApp::proxies`.
    pub proxies: bool,
    /// The meeting service's deadline on user-service calls (default 5 s).
    pub user_call_timeout: Option<Duration>,
    /// Chat streams: the service's settings and the gateway's limits
    /// (default: production's, with a 1 s heartbeat).
    pub chat_stream: Option<chat_service::StreamConfig>,
    pub stream_limits: Option<gateway::chats::StreamLimits>,
}

/// Cut-able links between the parts (see `TestOptions::proxies`).
pub struct Proxies {
    pub user_db: TcpProxy,
    pub user_grpc: TcpProxy,
    pub meeting_grpc: TcpProxy,
}

impl Proxies {
    async fn start(user_db_url: &str) -> (Self, String) {
        let mut url = url::Url::parse(user_db_url).unwrap();
        let postgres = (
            url.host_str().unwrap().to_owned(),
            url.port().unwrap_or(5432),
        );
        let postgres = tokio::net::lookup_host(postgres)
            .await
            .unwrap()
            .next()
            .unwrap();
        let user_db = TcpProxy::start(postgres).await.unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(user_db.addr().port())).unwrap();
        let proxies = Self {
            user_db,
            user_grpc: TcpProxy::unpointed().await.unwrap(),
            meeting_grpc: TcpProxy::unpointed().await.unwrap(),
        };
        (proxies, url.to_string())
    }
}

pub fn shared_redis_url() -> String {
    std::env::var("HUDDLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        let (database, meeting_database, chat_database) = tokio::join!(
            TestDatabase::create("huddle_user", user_service::MIGRATIONS),
            TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS),
            TestDatabase::create("huddle_chat", chat_service::MIGRATIONS),
        );
        let database = database.expect("user test database");
        let meeting_database = meeting_database.expect("meeting test database");
        let chat_database = chat_database.expect("chat test database");
        let cache_config = CacheConfig {
            redis_url: options.redis_url.clone().unwrap_or_else(shared_redis_url),
            cluster_nodes: options.cluster_nodes.clone(),
            prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
            // Generous for a loaded 2-core test machine: these tests are
            // about cache contents, not about Redis latency.
            op_timeout: Duration::from_millis(500),
            ..CacheConfig::default()
        };
        let urls = DbUrls {
            user: database.url().to_owned(),
            meeting: meeting_database.url().to_owned(),
            chat: chat_database.url().to_owned(),
        };
        let mut app = Self::start(&options, urls, cache_config).await;
        app._databases = Some((database, meeting_database, chat_database));
        app
    }

    /// A second "replica" of this app: its own processes (pools, flights,
    /// breakers, relays, gateway) on the same databases, Redis and prefix,
    /// as two pods of each service would be.
    pub async fn replica(&self) -> Self {
        self.replica_with(TestOptions::default()).await
    }

    /// [`TestApp::replica`] with options of its own.
    pub async fn replica_with(&self, options: TestOptions) -> Self {
        let urls = DbUrls {
            user: self.user_db_url.clone(),
            meeting: self.meeting_db_url.clone(),
            chat: self.chat_db_url.clone(),
        };
        Self::start(&options, urls, self.cache_config.clone()).await
    }

    async fn start(options: &TestOptions, urls: DbUrls, cache_config: CacheConfig) -> Self {
        let DbUrls {
            user: user_db_url,
            meeting: meeting_db_url,
            chat: chat_db_url,
        } = urls;
        let registry = prometheus::Registry::new();
        let cache = Cache::new(&cache_config, CacheMetrics::register(&registry).unwrap()).unwrap();
        let shutdown = Shutdown::new();
        let shared = huddle_serve::Shared {
            cache: cache.clone(),
            grpc_metrics: huddle_serve::GrpcMetrics::register(&registry).unwrap(),
            shutdown: shutdown.clone(),
        };
        let (proxies, user_service_db_url) = if options.proxies {
            let (proxies, url) = Proxies::start(&user_db_url).await;
            (Some(proxies), url)
        } else {
            (None, user_db_url.clone())
        };
        let dial = |proxy: &TcpProxy| Some(format!("http://{}", proxy.addr()));
        let service = |url: &str| huddle_serve::ServiceConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: url.to_owned(),
            db_pool_size: 4,
        };
        let config = huddle::stack::StackConfig {
            user: service(&user_service_db_url),
            meeting: service(&meeting_db_url),
            chat: service(&chat_db_url),
            chat_stream: options.chat_stream.clone().unwrap_or_default(),
            user_call_timeout: options.user_call_timeout.unwrap_or(Duration::from_secs(5)),
            gateway: gateway_config(options),
            dial: huddle::stack::Dial {
                user: proxies.as_ref().and_then(|p| dial(&p.user_grpc)),
                meeting: proxies.as_ref().and_then(|p| dial(&p.meeting_grpc)),
                chat: None,
            },
        };
        let stack = huddle::stack::start(config, registry, shared)
            .await
            .expect("stack");
        let user_addr = stack.user.addr;
        let meeting_addr = stack.meeting.service.addr;
        if let Some(proxies) = &proxies {
            proxies.user_grpc.point_at(user_addr);
            proxies.meeting_grpc.point_at(meeting_addr);
        }
        let app = Self {
            base: format!("http://{}", stack.http_addr),
            http: reqwest::Client::new(),
            user_db: stack.user.db.clone(),
            user_addr,
            meeting_db: stack.meeting.service.db.clone(),
            meeting_addr,
            meeting_outbox: stack.meeting.service.outbox.clone(),
            meeting_cascade: stack.meeting.cascade.clone(),
            meeting_failpoints: stack.meeting.service.failpoints.clone(),
            chat_db: stack.chat.service.db.clone(),
            chat_addr: stack.chat.service.addr,
            chat_outbox: stack.chat.service.outbox.clone(),
            chat_hubs: stack.chat.hubs.clone(),
            cache,
            proxies,
            shutdown,
            user_db_url,
            meeting_db_url,
            chat_db_url,
            cache_config,
            _databases: None,
        };
        stack.spawn();
        app
    }

    /// Stops this app's processes, as SIGTERM would (its replicas go on).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// Posts a chat message and asserts it was accepted.
    pub async fn post_chat(&self, token: &str, meeting: &str, message: &str) -> Value {
        let resp = self
            .post(
                &format!("/api/meetings/{meeting}/chats"),
                token,
                json!({ "message": message }),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
        resp.body["data"].clone()
    }

    pub fn admin_token(&self) -> String {
        gateway::auth::mint_token(SECRET, "admin", true, Duration::from_secs(600)).unwrap()
    }

    pub fn token_for(&self, user: &str) -> String {
        gateway::auth::mint_token(SECRET, user, false, Duration::from_secs(600)).unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("http call");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a SCHEDULED meeting (two hours ahead) as `token`'s user.
    pub async fn create_meeting(&self, token: &str, title: &str) -> Value {
        let resp = self
            .post(
                "/api/meetings",
                token,
                json!({"title": title, "scheduledAt": later(2)}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
        resp.body["data"].clone()
    }

    /// Creates an instant (LIVE) meeting; its host is in it.
    pub async fn create_live_meeting(&self, token: &str, title: &str) -> Value {
        let resp = self
            .post(
                "/api/meetings",
                token,
                json!({"title": title, "status": "LIVE"}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
        resp.body["data"].clone()
    }

    /// Joins by invite code and asserts it worked.
    pub async fn join(&self, token: &str, invite_code: &str) -> Value {
        let resp = self
            .post(
                "/api/meetings/join",
                token,
                json!({"inviteCode": invite_code}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
        resp.body["data"].clone()
    }

    /// Every key under this test's prefix whose path contains `needle`
    /// (SCAN, never KEYS), as paths without the prefix.
    pub async fn keys_containing(&self, needle: &str) -> Vec<String> {
        self.cache
            .scan(&format!("*{needle}*"), 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.trim_start_matches(self.cache.prefix()).to_owned())
            .collect()
    }

    /// Asserts a value (not a not-found marker) is cached under each path.
    pub async fn assert_cached(&self, paths: &[String]) {
        for path in paths {
            let cached = self.cache.inspect(path).await.unwrap();
            assert!(
                cached.is_some_and(|(v, _)| !v.starts_with('<')),
                "{path} should be cached"
            );
        }
    }

    /// A fresh user (unique email) and a token for them: `(id, token)`.
    pub async fn user(&self, name: &str) -> (String, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let user = self.create_user(name, &email).await;
        let id = user["id"].as_str().unwrap().to_owned();
        let token = self.token_for(&id);
        (id, token)
    }

    /// Creates a user through the API (admin) and returns its JSON.
    pub async fn create_user(&self, name: &str, email: &str) -> Value {
        let resp = self
            .call(
                Method::POST,
                "/api/users",
                Some(&self.admin_token()),
                Some(json!({ "name": name, "email": email })),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
        resp.body["data"].clone()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of `/metrics`, 0 when absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The gateway of a test stack; its service addresses are set by the stack.
fn gateway_config(options: &TestOptions) -> gateway::GatewayConfig {
    gateway::GatewayConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        user_addr: String::new(),
        meeting_addr: String::new(),
        chat_addr: String::new(),
        streams: options
            .stream_limits
            .clone()
            .unwrap_or(gateway::chats::StreamLimits {
                heartbeat: Duration::from_secs(1),
                ..gateway::chats::StreamLimits::default()
            }),
        jwt_secret: SECRET.to_owned(),
        request_timeout: Duration::from_secs(5),
        workers: 1,
        // No limiter: tests create and join freely (the limiter's
        // own tests are in the gateway crate).
        rate_limit: gateway::ratelimit::RateLimitConfig::default(),
        swagger_ui: true,
    }
}

/// Polls `check` until it holds or `limit` has passed; whether it held.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// RFC 3339 timestamp `hours` from now.
pub fn later(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()
}

pub fn assert_error(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status.as_u16(), status, "{:?}", resp.body);
    assert_eq!(resp.body["success"], json!(false), "{:?}", resp.body);
    assert_eq!(resp.body["code"], json!(code), "{:?}", resp.body);
    assert!(resp.body["message"].as_str().is_some_and(|m| !m.is_empty()));
}
