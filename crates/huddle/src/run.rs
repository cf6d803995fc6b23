//! The long-running process modes: `all`, `gateway`, and one per service.

use std::{net::SocketAddr, time::Duration};

use cache_core::{Cache, CacheMetrics};
use huddle_common::Shutdown;

use crate::config::{AllArgs, Global};

pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// One registry per process: the gateway's `/metrics` (or the metrics port of
/// a standalone service) shows everything the process measured.
fn registry_and_cache(
    global: &Global,
) -> Result<(prometheus::Registry, Cache), Box<dyn std::error::Error>> {
    let registry = prometheus::Registry::new();
    let metrics = CacheMetrics::register(&registry)?;
    let cache = Cache::new(&global.cache_config(), metrics)?;
    huddle_db::pool_metrics::PoolCollector::register_redis(cache.clone(), &registry)?;
    Ok((registry, cache))
}

fn user_config(
    global: &Global,
    listen_addr: SocketAddr,
) -> Result<user_service::UserConfig, Box<dyn std::error::Error>> {
    Ok(user_service::UserConfig {
        listen_addr,
        database_url: huddle_db::database_url(&global.database_url, user_service::DATABASE_NAME)?,
        db_pool_size: usize::from(global.db_pool_size),
    })
}

/// `user_addr`: where the meeting service dials user-service.
fn meeting_config(
    global: &Global,
    listen_addr: SocketAddr,
    user_addr: String,
) -> Result<meeting_service::MeetingConfig, Box<dyn std::error::Error>> {
    Ok(meeting_service::MeetingConfig {
        listen_addr,
        database_url: huddle_db::database_url(
            &global.database_url,
            meeting_service::DATABASE_NAME,
        )?,
        db_pool_size: usize::from(global.db_pool_size),
        user_addr,
        user_call_timeout: Duration::from_millis(global.request_timeout_ms),
    })
}

fn gateway_config(
    global: &Global,
    user_addr: String,
    meeting_addr: String,
    jwt_secret: String,
) -> gateway::GatewayConfig {
    gateway::GatewayConfig {
        http_addr: global.http_addr,
        user_addr,
        meeting_addr,
        jwt_secret,
        request_timeout: Duration::from_millis(global.request_timeout_ms),
        workers: 2,
    }
}

pub async fn all(global: &Global, args: AllArgs) -> CmdResult {
    let jwt_secret = global.jwt_secret(true)?;
    let (registry, cache) = registry_and_cache(global)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();

    let user = user_service::bind(
        &user_config(global, global.user_listen_addr()?)?,
        cache.clone(),
        shutdown.clone(),
    )
    .await?;
    // Services dial each other over loopback, exactly as they would across
    // pods.
    let user_dial = format!("http://{}", loopback(user.addr));
    let meeting = meeting_service::bind(
        &meeting_config(global, global.meeting_listen_addr()?, user_dial.clone())?,
        cache,
        shutdown.clone(),
    )
    .await?;
    let meeting_dial = format!("http://{}", loopback(meeting.addr));
    huddle_db::pool_metrics::PoolCollector::register(
        user.db.clone(),
        user_service::DATABASE_NAME,
        &registry,
    )?;
    huddle_db::pool_metrics::PoolCollector::register(
        meeting.db.clone(),
        meeting_service::DATABASE_NAME,
        &registry,
    )?;
    let (http_addr, gateway) = gateway::bind(
        gateway_config(global, user_dial, meeting_dial, jwt_secret.clone()),
        registry,
        shutdown.clone(),
    )
    .await?;
    if args.banner {
        print_banner(http_addr, &jwt_secret)?;
    }
    let (user_result, meeting_result, gateway_result) = tokio::join!(
        stop_all_on_exit(user.server, &shutdown),
        stop_all_on_exit(meeting.server, &shutdown),
        stop_all_on_exit(gateway, &shutdown)
    );
    user_result?;
    meeting_result?;
    gateway_result?;
    Ok(())
}

pub async fn gateway(global: &Global) -> CmdResult {
    let jwt_secret = global.jwt_secret(false)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let registry = prometheus::Registry::new();
    let (_, server) = gateway::bind(
        gateway_config(
            global,
            global.user_addr.clone(),
            global.meeting_addr.clone(),
            jwt_secret,
        ),
        registry,
        shutdown,
    )
    .await?;
    server.await?;
    Ok(())
}

pub async fn user(global: &Global) -> CmdResult {
    let (registry, cache) = registry_and_cache(global)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let bound = user_service::bind(
        &user_config(global, global.user_listen_addr()?)?,
        cache,
        shutdown.clone(),
    )
    .await?;
    huddle_db::pool_metrics::PoolCollector::register(
        bound.db.clone(),
        user_service::DATABASE_NAME,
        &registry,
    )?;
    standalone(global, registry, shutdown, bound.server).await
}

pub async fn meeting(global: &Global) -> CmdResult {
    let (registry, cache) = registry_and_cache(global)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let bound = meeting_service::bind(
        &meeting_config(
            global,
            global.meeting_listen_addr()?,
            global.user_addr.clone(),
        )?,
        cache,
        shutdown.clone(),
    )
    .await?;
    huddle_db::pool_metrics::PoolCollector::register(
        bound.db.clone(),
        meeting_service::DATABASE_NAME,
        &registry,
    )?;
    standalone(global, registry, shutdown, bound.server).await
}

/// A service running alone: its gRPC server plus a metrics endpoint.
async fn standalone<E: std::error::Error + 'static>(
    global: &Global,
    registry: prometheus::Registry,
    shutdown: Shutdown,
    server: impl std::future::Future<Output = Result<(), E>>,
) -> CmdResult {
    let metrics =
        crate::metrics_server::serve(global.metrics_addr, registry, shutdown.clone()).await?;
    let (served, _) = tokio::join!(stop_all_on_exit(server, &shutdown), metrics);
    served?;
    Ok(())
}

/// When one server of the process stops (error or not), stop the others too:
/// a half-running `huddle all` is worse than none.
async fn stop_all_on_exit<E: std::error::Error + 'static>(
    server: impl std::future::Future<Output = Result<(), E>>,
    shutdown: &Shutdown,
) -> Result<(), Box<dyn std::error::Error>> {
    let result = server.await;
    shutdown.trigger();
    result.map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn print_banner(http_addr: SocketAddr, jwt_secret: &str) -> CmdResult {
    let (id, name, _) = user_service::seed::demo_users()
        .into_iter()
        .next()
        .ok_or("no demo users")?;
    let token = gateway::auth::mint_token(
        jwt_secret,
        &id.to_string(),
        false,
        Duration::from_secs(24 * 3600),
    )?;
    let base = format!("http://{}", loopback(http_addr));
    println!();
    println!("Huddle is serving on {base}");
    println!("  API docs:   {base}/api/docs/");
    println!("  demo user:  {name} ({id})");
    println!("  demo token (24 h): {token}");
    println!();
    println!("Try:");
    println!("  curl -s -H 'Authorization: Bearer {token}' {base}/api/users/{id}");
    println!("  curl -s -H 'Authorization: Bearer {token}' {base}/api/meetings/live");
    println!();
    Ok(())
}
