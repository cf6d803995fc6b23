//! Process composition: every service and the gateway in one process,
//! dialling each other over loopback exactly as they would across pods.
//! `huddle all`, the tests' `TestApp` and `make bench` all start the same
//! stack through [`start`], so what the tests exercise is what runs.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use huddle_common::Shutdown;
use huddle_serve::{ServiceConfig, Shared};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

type Server = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

pub struct StackConfig {
    pub user: ServiceConfig,
    pub meeting: ServiceConfig,
    pub recording: recording_service::RecordingConfig,
    pub chat: ServiceConfig,
    /// The chat service's streams (poll tick, buffers, limit).
    pub chat_stream: chat_service::StreamConfig,
    /// Deadline of the meeting service's calls to user-service.
    pub user_call_timeout: Duration,
    /// The gateway; its service addresses are set to the bound services.
    pub gateway: gateway::GatewayConfig,
    /// Dial these instead of the bound services (tests put a proxy they
    /// can cut in between); `None`: the bound address over loopback.
    pub dial: Dial,
    /// user-service's own cache handle instead of the shared one (tests
    /// give it a Redis link they can cut alone); `None`: `shared.cache`.
    pub user_cache: Option<cache_core::Cache>,
}

#[derive(Debug, Clone, Default)]
pub struct Dial {
    pub user: Option<String>,
    pub meeting: Option<String>,
    pub recording: Option<String>,
    pub chat: Option<String>,
}

/// A bound stack; nothing serves until [`Stack::run`] or [`Stack::spawn`].
pub struct Stack {
    pub user: huddle_serve::Bound,
    pub meeting: meeting_service::Bound,
    pub recording: huddle_serve::Bound,
    /// Webhooks by outcome (tests read them).
    pub webhook_metrics: recording_service::WebhookMetrics,
    pub chat: chat_service::Bound,
    pub http_addr: SocketAddr,
    gateway: Server,
    shutdown: Shutdown,
    services_shutdown: Shutdown,
}

pub async fn start(
    mut config: StackConfig,
    registry: prometheus::Registry,
    shared: Shared,
) -> Result<Stack, Error> {
    let shutdown = shared.shutdown.clone();
    // The services stop after the gateway (see `Stack::run`).
    let services_shutdown = Shutdown::new();
    let shared = Shared {
        shutdown: services_shutdown.clone(),
        ..shared
    };
    let grpc = shared.grpc_metrics.clone();
    let user_shared = match config.user_cache.take() {
        Some(cache) => Shared {
            cache,
            ..shared.clone()
        },
        None => shared.clone(),
    };
    let user = user_service::bind(&config.user, user_shared).await?;
    let user_dial =
        (config.dial.user.take()).unwrap_or_else(|| format!("http://{}", loopback(user.addr)));
    let webhook_metrics = recording_service::WebhookMetrics::register(&registry)?;
    let recording =
        recording_service::bind(&config.recording, shared.clone(), webhook_metrics.clone()).await?;
    let recording_dial = (config.dial.recording.take())
        .unwrap_or_else(|| format!("http://{}", loopback(recording.addr)));
    let chat = chat_service::bind(
        &chat_service::ChatConfig {
            service: config.chat,
            user_addr: user_dial.clone(),
            user_call_timeout: config.user_call_timeout,
            stream: config.chat_stream,
        },
        shared.clone(),
    )
    .await?;
    let chat_dial = (config.dial.chat.take())
        .unwrap_or_else(|| format!("http://{}", loopback(chat.service.addr)));
    let meeting = meeting_service::bind(
        &meeting_service::MeetingConfig {
            service: config.meeting,
            user_addr: user_dial.clone(),
            user_call_timeout: config.user_call_timeout,
            recording_addr: Some(recording_dial.clone()),
            chat_addr: Some(chat_dial.clone()),
        },
        shared,
    )
    .await?;
    for (db, name) in [
        (&user.db, user_service::DATABASE_NAME),
        (&meeting.service.db, meeting_service::DATABASE_NAME),
        (&recording.db, recording_service::DATABASE_NAME),
        (&chat.service.db, chat_service::DATABASE_NAME),
    ] {
        huddle_db::pool_metrics::PoolCollector::register(db.clone(), name, &registry)?;
    }
    config.gateway.user_addr = user_dial;
    config.gateway.recording_addr = recording_dial;
    config.gateway.chat_addr = chat_dial;
    config.gateway.meeting_addr = (config.dial.meeting.take())
        .unwrap_or_else(|| format!("http://{}", loopback(meeting.service.addr)));
    let (http_addr, gateway) =
        gateway::bind(config.gateway, registry, grpc, shutdown.clone()).await?;
    Ok(Stack {
        user,
        meeting,
        recording,
        webhook_metrics,
        chat,
        http_addr,
        gateway: Box::pin(async move { Ok(gateway.await?) }),
        shutdown,
        services_shutdown,
    })
}

impl Stack {
    /// Serves until shutdown. When one server stops (error or not) the
    /// others are stopped too: a half-running process is worse than none.
    ///
    /// In order: the gateway stops accepting and drains (its chat streams
    /// end at once), which drops its channels to the services; only then
    /// do the gRPC servers stop, each draining within
    /// [`huddle_serve::DRAIN_BOUND`]. The services stopping first left the
    /// gateway's in-flight calls refused, and its channels (clients in this
    /// very process) holding connections the servers waited on.
    pub async fn run(self) -> Result<(), Error> {
        let shutdown = self.shutdown;
        let services = self.services_shutdown;
        let gateway = async {
            let result = stop_all_on_exit(self.gateway, &shutdown).await;
            services.trigger();
            result
        };
        let (user, meeting, recording, chat, gateway) = tokio::join!(
            stop_all_on_exit(self.user.server, &shutdown),
            stop_all_on_exit(self.meeting.service.server, &shutdown),
            stop_all_on_exit(self.recording.server, &shutdown),
            stop_all_on_exit(self.chat.service.server, &shutdown),
            gateway,
        );
        user?;
        meeting?;
        recording?;
        chat?;
        gateway
    }

    /// Serves in the background (tests): stops when the shutdown fires.
    pub fn spawn(self) -> tokio::task::JoinHandle<Result<(), Error>> {
        tokio::spawn(self.run())
    }
}

async fn stop_all_on_exit<E: Into<Error>>(
    server: impl Future<Output = Result<(), E>>,
    shutdown: &Shutdown,
) -> Result<(), Error> {
    let result = server.await;
    shutdown.trigger();
    result.map_err(Into::into)
}

/// A listener bound to 0.0.0.0 is dialled on 127.0.0.1.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}
