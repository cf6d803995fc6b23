//! The long-running process modes: `all`, `gateway`, and one per service.

use std::{net::SocketAddr, time::Duration};

use cache_core::{Cache, CacheMetrics};
use huddle::stack::{self, StackConfig};
use huddle_common::Shutdown;
use huddle_serve::{GrpcMetrics, ServiceConfig, Shared};

use crate::config::{AllArgs, Global};
use crate::livekit_cmd::{livekit_keys, media_config};

pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// One registry per process: the gateway's `/metrics` (or the metrics port of
/// a standalone service) shows everything the process measured.
fn registry_and_shared(
    global: &Global,
    shutdown: &Shutdown,
) -> Result<(prometheus::Registry, Shared), Box<dyn std::error::Error>> {
    let registry = prometheus::Registry::new();
    let metrics = CacheMetrics::register(&registry)?;
    let cache = Cache::new(&global.cache_config(), metrics)?;
    huddle_db::pool_metrics::PoolCollector::register_redis(cache.clone(), &registry)?;
    let grpc_metrics = GrpcMetrics::register(&registry)?;
    Ok((
        registry,
        Shared {
            cache,
            grpc_metrics,
            shutdown: shutdown.clone(),
        },
    ))
}

fn service_config(
    global: &Global,
    listen_addr: SocketAddr,
    database: &str,
) -> Result<ServiceConfig, Box<dyn std::error::Error>> {
    Ok(ServiceConfig {
        listen_addr,
        database_url: huddle_db::database_url(&global.database_url, database)?,
        db_pool_size: usize::from(global.db_pool_size),
    })
}

fn user_call_timeout(global: &Global) -> Duration {
    Duration::from_millis(global.request_timeout_ms)
}

fn gateway_config(
    global: &Global,
    user_addr: String,
    meeting_addr: String,
    jwt_secret: String,
) -> Result<gateway::GatewayConfig, String> {
    Ok(gateway::GatewayConfig {
        http_addr: global.http_addr,
        user_addr,
        meeting_addr,
        recording_addr: global.recording_addr.clone(),
        chat_addr: global.chat_addr.clone(),
        streams: global.stream_limits(),
        jwt_secret,
        request_timeout: Duration::from_millis(global.request_timeout_ms),
        workers: 2,
        rate_limit: global.rate_limit_config(),
        swagger_ui: global.swagger_ui,
        coalesce_reads: global.cache_reads,
    })
}

pub async fn all(global: &Global, args: AllArgs) -> CmdResult {
    let jwt_secret = global.jwt_secret(true)?;
    let livekit = livekit_keys(global, true)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (registry, shared) = registry_and_shared(global, &shutdown)?;
    let mut config = StackConfig {
        user: service_config(
            global,
            global.user_listen_addr()?,
            user_service::DATABASE_NAME,
        )?,
        meeting: service_config(
            global,
            global.meeting_listen_addr()?,
            meeting_service::DATABASE_NAME,
        )?,
        recording: recording_service::RecordingConfig {
            service: service_config(
                global,
                global.recording_listen_addr()?,
                recording_service::DATABASE_NAME,
            )?,
            livekit: livekit.clone(),
            media: media_config(global),
        },
        chat: service_config(
            global,
            global.chat_listen_addr()?,
            chat_service::DATABASE_NAME,
        )?,
        chat_stream: global.chat_stream_config(),
        user_call_timeout: user_call_timeout(global),
        // The stack points it at the services it binds.
        gateway: gateway_config(global, String::new(), String::new(), jwt_secret.clone())?,
        dial: stack::Dial::default(),
        user_cache: None,
    };
    let standin = dev_livekit_standin(global, livekit, &mut config.recording.media)?;
    let stack = stack::start(config, registry, shared)
        .await
        .map_err(|e| e as Box<dyn std::error::Error>)?;
    if let Some(standin) = &standin {
        standin.set_webhook_url(format!(
            "http://{}{}",
            stack.http_addr,
            gateway::recordings::WEBHOOK_PATH
        ));
    }
    if args.banner {
        print_banner(stack.http_addr, &jwt_secret)?;
    }
    stack
        .run()
        .await
        .map_err(|e| e as Box<dyn std::error::Error>)
}

/// `huddle all` in dev with no LIVEKIT_URL: LiveKit's stand-in on a free
/// loopback port, with the webhook receiver's key pair, so joins carry
/// tokens and recordings start with nothing else running. Never outside dev.
fn dev_livekit_standin(
    global: &Global,
    keys: recording_service::LivekitKeys,
    media: &mut recording_service::MediaConfig,
) -> Result<Option<huddle::livekit_standin::StandIn>, Box<dyn std::error::Error>> {
    if media.url.is_some() || !global.is_dev() {
        return Ok(None);
    }
    let standin = huddle::livekit_standin::StandIn::start(keys)?;
    tracing::warn!(url = %standin.url(), "LIVEKIT_URL is not set; LiveKit stand-in started (HUDDLE_ENV=dev)");
    media.url = Some(standin.url());
    Ok(Some(standin))
}

pub async fn gateway(global: &Global) -> CmdResult {
    let jwt_secret = global.jwt_secret(false)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let registry = prometheus::Registry::new();
    let grpc = GrpcMetrics::register(&registry)?;
    let (_, server) = gateway::bind(
        gateway_config(
            global,
            global.user_addr.clone(),
            global.meeting_addr.clone(),
            jwt_secret,
        )?,
        registry,
        grpc,
        shutdown,
    )
    .await?;
    server.await?;
    Ok(())
}

pub async fn user(global: &Global) -> CmdResult {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (registry, shared) = registry_and_shared(global, &shutdown)?;
    let config = service_config(
        global,
        global.user_listen_addr()?,
        user_service::DATABASE_NAME,
    )?;
    let bound = user_service::bind(&config, shared).await?;
    let db = (&bound.db, user_service::DATABASE_NAME);
    standalone(global, registry, shutdown, db, bound.server).await
}

pub async fn meeting(global: &Global) -> CmdResult {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (registry, shared) = registry_and_shared(global, &shutdown)?;
    let config = meeting_service::MeetingConfig {
        service: service_config(
            global,
            global.meeting_listen_addr()?,
            meeting_service::DATABASE_NAME,
        )?,
        user_addr: global.user_addr.clone(),
        user_call_timeout: user_call_timeout(global),
        recording_addr: Some(global.recording_addr.clone()),
        chat_addr: Some(global.chat_addr.clone()),
    };
    let bound = meeting_service::bind(&config, shared).await?;
    let db = (&bound.service.db, meeting_service::DATABASE_NAME);
    standalone(global, registry, shutdown, db, bound.service.server).await
}

pub async fn recording(global: &Global) -> CmdResult {
    let livekit = livekit_keys(global, false)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (registry, shared) = registry_and_shared(global, &shutdown)?;
    let config = recording_service::RecordingConfig {
        service: service_config(
            global,
            global.recording_listen_addr()?,
            recording_service::DATABASE_NAME,
        )?,
        livekit,
        media: media_config(global),
    };
    let metrics = recording_service::WebhookMetrics::register(&registry)?;
    let bound = recording_service::bind(&config, shared, metrics).await?;
    let db = (&bound.db, recording_service::DATABASE_NAME);
    standalone(global, registry, shutdown, db, bound.server).await
}

pub async fn chat(global: &Global) -> CmdResult {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (registry, shared) = registry_and_shared(global, &shutdown)?;
    let config = chat_service::ChatConfig {
        service: service_config(
            global,
            global.chat_listen_addr()?,
            chat_service::DATABASE_NAME,
        )?,
        user_addr: global.user_addr.clone(),
        user_call_timeout: user_call_timeout(global),
        stream: global.chat_stream_config(),
    };
    let bound = chat_service::bind(&config, shared).await?;
    let db = (&bound.service.db, chat_service::DATABASE_NAME);
    standalone(global, registry, shutdown, db, bound.service.server).await
}

/// A service running alone: its gRPC server plus a metrics endpoint (with
/// its database pool's gauges).
async fn standalone<E: std::error::Error + 'static>(
    global: &Global,
    registry: prometheus::Registry,
    shutdown: Shutdown,
    (db, database): (&huddle_db::Database, &str),
    server: impl std::future::Future<Output = Result<(), E>>,
) -> CmdResult {
    huddle_db::pool_metrics::PoolCollector::register(db.clone(), database, &registry)?;
    let metrics =
        crate::metrics_server::serve(global.metrics_addr, registry, shutdown.clone()).await?;
    let (served, _) = tokio::join!(
        async {
            let result = server.await;
            // The metrics server stops with the service.
            shutdown.trigger();
            result
        },
        metrics
    );
    served?;
    Ok(())
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
    let base = format!("http://{}", stack::loopback(http_addr));
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
