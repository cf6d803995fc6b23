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
/// Polls a condition until it holds or the limit passes (one helper for all
/// end-to-end tests).
pub use huddle_testkit::eventually;
use huddle_testkit::{database::TestDatabase, proxy::TcpProxy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

mod proxies;
pub use proxies::Proxies;
use proxies::user_redis_link;

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The LiveKit key pair the test stack verifies webhooks with.
/// Where a gateway at `http_addr` takes LiveKit's webhooks.
pub fn webhook_url(http_addr: std::net::SocketAddr) -> String {
    format!("http://{http_addr}{}", gateway::recordings::WEBHOOK_PATH)
}

fn recording_config(
    service: huddle_serve::ServiceConfig,
    livekit_url: String,
) -> recording_service::RecordingConfig {
    recording_service::RecordingConfig {
        service,
        livekit: livekit_keys(),
        media: recording_service::MediaConfig {
            url: Some(livekit_url),
            ..Default::default()
        },
    }
}

pub fn livekit_keys() -> recording_service::LivekitKeys {
    recording_service::LivekitKeys {
        api_key: "APItestkey".to_owned(),
        api_secret: "livekit-test-secret-0123456789abcdef".to_owned(),
    }
}

pub struct TestApp {
    pub base: String,
    /// The LiveKit stand-in this app's recording-service calls.
    pub livekit: huddle::livekit_standin::StandIn,
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
    /// The recording service's database handle, address and webhook counts.
    pub recording_db: Database,
    pub recording_addr: std::net::SocketAddr,
    pub recording_outbox: huddle_serve::Outbox,
    pub webhook_metrics: recording_service::WebhookMetrics,
    /// The chat service's database handle, outbox and streams.
    pub chat_db: Database,
    pub chat_addr: std::net::SocketAddr,
    pub chat_outbox: huddle_serve::Outbox,
    pub chat_hubs: chat_service::Hubs,
    /// A handle on the same Redis prefix the services use.
    pub cache: Cache,
    /// With `TestOptions::proxies`.
    pub proxies: Option<Proxies>,
    /// With `TestOptions::user_redis_proxy`: user-service's own link to
    /// Redis, which the test may cut while every other service keeps its own.
    pub user_redis: Option<TcpProxy>,
    /// With `TestOptions::postgres_proxy`: every service's link to Postgres.
    pub postgres: Option<TcpProxy>,
    shutdown: Shutdown,
    /// What a replica needs to share this app's data: database URLs and
    /// the cache settings (same Redis, same prefix).
    urls: DbUrls,
    cache_config: CacheConfig,
    /// Dropped with the app that created them, not with its replicas.
    _databases: Option<[TestDatabase; 4]>,
}

/// The databases a stack (and its replicas) use.
#[derive(Clone)]
pub(crate) struct DbUrls {
    user: String,
    meeting: String,
    recording: String,
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
    /// user-service gets its own cache client (pool, breaker, holds) behind
    /// a proxy to the (single, not cluster) Redis: `TestApp::user_redis`.
    pub user_redis_proxy: bool,
    /// The meeting service's deadline on user-service calls (default 5 s).
    pub user_call_timeout: Option<Duration>,
    /// Chat streams: the service's settings and the gateway's limits
    /// (default: production's, with a 1 s heartbeat).
    pub chat_stream: Option<chat_service::StreamConfig>,
    pub stream_limits: Option<gateway::chats::StreamLimits>,
    /// Turn the gateway's read coalescing off (default: on, production's).
    pub no_coalescing: bool,
    /// Every service reaches Postgres through one proxy the test can cut
    /// (`TestApp::postgres`), as in a failover of the managed database.
    pub postgres_proxy: bool,
}

pub fn shared_redis_url() -> String {
    std::env::var("HUDDLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        let (database, meeting_database, recording_database, chat_database) = tokio::join!(
            TestDatabase::create("huddle_user", user_service::MIGRATIONS),
            TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS),
            TestDatabase::create("huddle_recording", recording_service::MIGRATIONS),
            TestDatabase::create("huddle_chat", chat_service::MIGRATIONS),
        );
        let database = database.expect("user test database");
        let meeting_database = meeting_database.expect("meeting test database");
        let recording_database = recording_database.expect("recording test database");
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
            recording: recording_database.url().to_owned(),
            chat: chat_database.url().to_owned(),
        };
        let mut app = Self::start(&options, urls, cache_config).await;
        app._databases = Some([
            database,
            meeting_database,
            recording_database,
            chat_database,
        ]);
        app
    }

    /// A second "replica" of this app: its own processes (pools, flights,
    /// breakers, relays, gateway) on the same databases, Redis and prefix,
    /// as two pods of each service would be.
    pub async fn replica(&self) -> Self {
        self.replica_with(TestOptions::default()).await
    }

    /// [`TestApp::replica`] with options of its own.
    /// A `redis_url` there points this replica alone elsewhere (a proxy
    /// to the same Redis), with the same prefix.
    pub async fn replica_with(&self, options: TestOptions) -> Self {
        let mut cache_config = self.cache_config.clone();
        if let Some(url) = &options.redis_url {
            cache_config.redis_url.clone_from(url);
        }
        Self::start(&options, self.urls.clone(), cache_config).await
    }

    async fn start(options: &TestOptions, urls: DbUrls, cache_config: CacheConfig) -> Self {
        let registry = prometheus::Registry::new();
        let cache = Cache::new(&cache_config, CacheMetrics::register(&registry).unwrap()).unwrap();
        let shutdown = Shutdown::new();
        let shared = huddle_serve::Shared {
            cache: cache.clone(),
            grpc_metrics: huddle_serve::GrpcMetrics::register(&registry).unwrap(),
            shutdown: shutdown.clone(),
        };
        let (postgres, proxies, db) = proxies::database_links(options, &urls).await;
        let (user_redis, user_cache) = user_redis_link(options, &cache_config).await;
        let dial = |proxy: &TcpProxy| Some(format!("http://{}", proxy.addr()));
        let service = |url: &str| huddle_serve::ServiceConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: url.to_owned(),
            db_pool_size: 4,
        };
        // This app's own LiveKit stand-in, posting webhooks to its gateway.
        let livekit = huddle::livekit_standin::StandIn::start(livekit_keys()).expect("stand-in");
        let config = huddle::stack::StackConfig {
            user: service(&db.user),
            meeting: service(&db.meeting),
            recording: recording_config(service(&db.recording), livekit.url()),
            chat: service(&db.chat),
            chat_stream: options.chat_stream.clone().unwrap_or_default(),
            user_call_timeout: options.user_call_timeout.unwrap_or(Duration::from_secs(5)),
            gateway: gateway_config(options),
            dial: huddle::stack::Dial {
                user: proxies.as_ref().and_then(|p| dial(&p.user_grpc)),
                meeting: proxies.as_ref().and_then(|p| dial(&p.meeting_grpc)),
                recording: proxies.as_ref().and_then(|p| dial(&p.recording_grpc)),
                chat: None,
            },
            user_cache,
        };
        let stack = huddle::stack::start(config, registry, shared)
            .await
            .expect("stack");
        let user_addr = stack.user.addr;
        let meeting_addr = stack.meeting.service.addr;
        if let Some(proxies) = &proxies {
            proxies.user_grpc.point_at(user_addr);
            proxies.meeting_grpc.point_at(meeting_addr);
            proxies.recording_grpc.point_at(stack.recording.addr);
        }
        livekit.set_webhook_url(webhook_url(stack.http_addr));
        let app = Self {
            livekit,
            base: format!("http://{}", stack.http_addr),
            http: reqwest::Client::new(),
            user_db: stack.user.db.clone(),
            user_addr,
            meeting_db: stack.meeting.service.db.clone(),
            meeting_addr,
            meeting_outbox: stack.meeting.service.outbox.clone(),
            meeting_cascade: stack.meeting.cascade.clone(),
            meeting_failpoints: stack.meeting.service.failpoints.clone(),
            recording_db: stack.recording.db.clone(),
            recording_addr: stack.recording.addr,
            recording_outbox: stack.recording.outbox.clone(),
            webhook_metrics: stack.webhook_metrics.clone(),
            chat_db: stack.chat.service.db.clone(),
            chat_addr: stack.chat.service.addr,
            chat_outbox: stack.chat.service.outbox.clone(),
            chat_hubs: stack.chat.hubs.clone(),
            cache,
            proxies,
            user_redis,
            postgres,
            shutdown,
            urls,
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
        send(req).await
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

    /// Posts a LiveKit webhook body as LiveKit does, with `authorization`
    /// as the header (none when `None`).
    pub async fn post_webhook(&self, body: &str, authorization: Option<&str>) -> Response {
        let mut req = self
            .http
            .post(format!("{}/api/webhooks/livekit", self.base))
            .header("content-type", "application/webhook+json")
            .body(body.to_owned());
        if let Some(authorization) = authorization {
            req = req.header("authorization", authorization);
        }
        send(req).await
    }

    /// Signs `webhook` with the stack's LiveKit keys (as LiveKit does) and
    /// posts it; asserts a 200 and returns the outcome.
    pub async fn send_webhook(
        &self,
        webhook: &recording_service::livekit::EgressWebhook,
    ) -> String {
        let body = webhook.to_json().unwrap();
        let authorization = livekit_keys().sign(body.as_bytes()).unwrap();
        let resp = self.post_webhook(&body, Some(&authorization)).await;
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
        resp.body["data"]["outcome"].as_str().unwrap().to_owned()
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
        recording_addr: String::new(),
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
        // No limiter: tests create and join freely (the limiter's own tests
        // are in the gateway crate).
        rate_limit: gateway::ratelimit::RateLimitConfig::default(),
        swagger_ui: true,
        // Production's default, so every guarantee test runs through it.
        coalesce_reads: !options.no_coalescing,
    }
}

/// A LiveKit egress webhook for `meeting`'s egress `egress`: started
/// (STARTING), updated (ACTIVE) or ended (COMPLETE with its file), all
/// telling the same start time, as LiveKit's events of one egress do.
pub fn egress_webhook(
    event: &str,
    meeting: &str,
    egress: &str,
    started_at_ns: i64,
) -> recording_service::livekit::EgressWebhook {
    use recording_service::livekit::EgressStatus;
    let ended = event == "egress_ended";
    let status = match event {
        "egress_started" => EgressStatus::EgressStarting,
        "egress_updated" => EgressStatus::EgressActive,
        _ => EgressStatus::EgressComplete,
    };
    let duration_ns = 61_400_000_000;
    recording_service::livekit::EgressWebhook {
        event: event.to_owned(),
        room: meeting.to_owned(),
        egress_id: egress.to_owned(),
        status,
        started_at_ns,
        ended_at_ns: if ended {
            started_at_ns + duration_ns
        } else {
            0
        },
        file: ended.then(|| {
            (
                format!("s3://recordings/{egress}.mp4"),
                duration_ns,
                7_654_321,
            )
        }),
        error: String::new(),
        created_at: started_at_ns / 1_000_000_000,
    }
}

/// Sends `req`; the body is JSON when it parses, else the text.
async fn send(req: reqwest::RequestBuilder) -> Response {
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
