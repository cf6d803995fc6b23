//! The links a test can cut: proxies in front of a service's Postgres,
//! gRPC peers and (for user-service alone) Redis.

use cache_core::{Cache, CacheConfig, CacheMetrics};
use huddle_testkit::proxy::TcpProxy;

use crate::{DbUrls, TestOptions};

/// Cut-able links between the parts (see `TestOptions::proxies`).
pub struct Proxies {
    pub user_db: TcpProxy,
    pub user_grpc: TcpProxy,
    pub meeting_grpc: TcpProxy,
    /// recording-service, as the gateway and meeting-service dial it.
    pub recording_grpc: TcpProxy,
}

impl Proxies {
    pub(crate) async fn start(user_db_url: &str) -> (Self, String) {
        let (user_db, url) = proxied(user_db_url, 5432).await;
        let proxies = Self {
            user_db,
            user_grpc: TcpProxy::unpointed().await.unwrap(),
            meeting_grpc: TcpProxy::unpointed().await.unwrap(),
            recording_grpc: TcpProxy::unpointed().await.unwrap(),
        };
        (proxies, url)
    }
}

/// The URLs each service reaches its database at, through the proxies
/// `options` ask for: every service's behind one (`postgres_proxy`), and
/// user-service's behind `Proxies::user_db` (`proxies`).
pub(crate) async fn database_links(
    options: &TestOptions,
    urls: &DbUrls,
) -> (Option<TcpProxy>, Option<Proxies>, DbUrls) {
    let (postgres, mut db) = if options.postgres_proxy {
        let (proxy, urls) = postgres_link(urls).await;
        (Some(proxy), urls)
    } else {
        (None, urls.clone())
    };
    let proxies = if options.proxies {
        let (proxies, url) = Proxies::start(&urls.user).await;
        db.user = url;
        Some(proxies)
    } else {
        None
    };
    (postgres, proxies, db)
}

/// One proxy in front of the Postgres server of `urls` (every service's
/// database is on it), and the URLs pointed at it.
pub(crate) async fn postgres_link(urls: &DbUrls) -> (TcpProxy, DbUrls) {
    let (proxy, user) = proxied(&urls.user, 5432).await;
    let through = |url: &str| {
        let mut url = url::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.addr().port())).unwrap();
        url.to_string()
    };
    let urls = DbUrls {
        user,
        meeting: through(&urls.meeting),
        recording: through(&urls.recording),
        chat: through(&urls.chat),
    };
    (proxy, urls)
}

/// A proxy in front of the server `url` names, and `url` pointed at it.
pub(crate) async fn proxied(url: &str, default_port: u16) -> (TcpProxy, String) {
    let mut url = url::Url::parse(url).unwrap();
    let server = (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(default_port),
    );
    let server = tokio::net::lookup_host(server)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(server).await.unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    (proxy, url.to_string())
}

/// With `TestOptions::user_redis_proxy`: a cache client of its own (same
/// prefix, its own metrics registry) reaching `config`'s Redis via a proxy.
pub(crate) async fn user_redis_link(
    options: &TestOptions,
    config: &CacheConfig,
) -> (Option<TcpProxy>, Option<Cache>) {
    if !options.user_redis_proxy {
        return (None, None);
    }
    assert!(config.cluster_nodes.is_empty(), "a single Redis only");
    let (proxy, redis_url) = proxied(&config.redis_url, 6379).await;
    let config = CacheConfig {
        redis_url,
        ..config.clone()
    };
    let metrics = CacheMetrics::register(&prometheus::Registry::new()).unwrap();
    (Some(proxy), Some(Cache::new(&config, metrics).unwrap()))
}
