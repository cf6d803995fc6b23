//! The HTTP/JSON API gateway: authenticates, validates and routes requests to
//! the domain services over gRPC. It owns no data and touches no database or
//! cache; every answer comes from a service or is an error in the one envelope.

pub mod allow;
pub mod auth;
pub mod chats;
pub mod coalesce;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod meetings;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod recording_control;
pub mod recordings;
pub mod request_id;
pub mod route;
pub mod users;
pub mod validate;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::{
    App, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::from_fn,
    web,
};
use huddle_common::Shutdown;
use huddle_common::grpc_client::{ChannelError, ChannelOptions, GrpcChannel, balanced_channel};
use huddle_common::grpc_metrics::GrpcMetrics;
use huddle_proto::chat::v1::chat_service_client::ChatServiceClient;
use huddle_proto::meeting::v1::meeting_service_client::MeetingServiceClient;
use huddle_proto::recording::v1::recording_service_client::RecordingServiceClient;
use huddle_proto::user::v1::user_service_client::UserServiceClient;
use prometheus::Registry;
use serde::Serialize;
use tonic_health::pb::health_client::HealthClient;
use utoipa::ToSchema;

use crate::auth::JwtVerifier;
use crate::metrics::HttpMetrics;
use crate::request_id::RequestId;

/// Largest JSON body accepted; anything bigger is a 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The user service's name in the standard gRPC health protocol.
pub const USER_SERVICE: &str = huddle_proto::user::v1::user_service_server::SERVICE_NAME;
/// The meeting service's name in the standard gRPC health protocol.
pub const MEETING_SERVICE: &str = huddle_proto::meeting::v1::meeting_service_server::SERVICE_NAME;
/// The recording service's name in the standard gRPC health protocol.
pub const RECORDING_SERVICE: &str =
    huddle_proto::recording::v1::recording_service_server::SERVICE_NAME;
/// The chat service's name in the standard gRPC health protocol.
pub const CHAT_SERVICE: &str = huddle_proto::chat::v1::chat_service_server::SERVICE_NAME;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long in-flight requests may run once shutdown starts.
const GRACEFUL_SHUTDOWN_SECS: u64 = 30;

#[derive(Clone)]
pub struct GatewayConfig {
    pub http_addr: SocketAddr,
    /// Where the user service is dialled: "host:port" or "http://host:port".
    pub user_addr: String,
    /// Where the meeting service is dialled, in the same forms.
    pub meeting_addr: String,
    /// Where the recording service is dialled, in the same forms.
    pub recording_addr: String,
    /// Where the chat service is dialled, in the same forms.
    pub chat_addr: String,
    /// Chat streams: heartbeat and how many may be open.
    pub streams: chats::StreamLimits,
    pub jwt_secret: String,
    /// Per gRPC call deadline.
    pub request_timeout: Duration,
    /// actix worker threads (tests use 1).
    pub workers: usize,
    /// Per-user limits and the Redis that counts them (none: no limiting).
    pub rate_limit: ratelimit::RateLimitConfig,
    /// Serve Swagger UI at `/api/docs/` (off in production; the document
    /// itself, `/api/openapi.json`, is always served: it is the contract).
    pub swagger_ui: bool,
    /// Concurrent hot reads share backend calls ([`coalesce`]); `false`
    /// (`HUDDLE_CACHE_READS=false`) sends each to the backend on its own.
    pub coalesce_reads: bool,
}

/// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("http_addr", &self.http_addr)
            .field("user_addr", &self.user_addr)
            .field("meeting_addr", &self.meeting_addr)
            .field("recording_addr", &self.recording_addr)
            .field("chat_addr", &self.chat_addr)
            .field("streams", &self.streams)
            .field("jwt_secret", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("workers", &self.workers)
            .field("rate_limit", &self.rate_limit)
            .field("coalesce_reads", &self.coalesce_reads)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid service address {addr:?}: {source}")]
    BadAddr {
        addr: String,
        #[source]
        source: ChannelError,
    },
    #[error("jwt secret must not be empty")]
    EmptySecret,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register gateway metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Limiter(#[from] ratelimit::LimiterError),
    #[error("http server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The success envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
}

pub(crate) fn success<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(Success {
        success: true,
        data,
    })
}

/// gRPC clients of the services the gateway routes to. Channels are lazy and
/// shared: cloning a client is cheap and reuses the connection.
#[derive(Clone)]
pub struct Backends {
    users: UserServiceClient<GrpcChannel>,
    meetings: MeetingServiceClient<GrpcChannel>,
    recordings: RecordingServiceClient<GrpcChannel>,
    chats: ChatServiceClient<GrpcChannel>,
    request_timeout: Duration,
}

impl Backends {
    pub fn users(&self) -> UserServiceClient<GrpcChannel> {
        self.users.clone()
    }

    pub fn meetings(&self) -> MeetingServiceClient<GrpcChannel> {
        self.meetings.clone()
    }

    pub fn recordings(&self) -> RecordingServiceClient<GrpcChannel> {
        self.recordings.clone()
    }

    pub fn chats(&self) -> ChatServiceClient<GrpcChannel> {
        self.chats.clone()
    }

    /// Wraps a message with the request id and the deadline, so the service
    /// can correlate logs and give up when the gateway already has.
    pub fn request<T>(&self, message: T, request_id: &RequestId) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.request_timeout);
        request_id.attach(&mut request);
        request
    }
}

/// Everything the app factory needs, built once per gateway and cloned into
/// each actix worker.
#[derive(Clone)]
pub struct AppState {
    backends: web::Data<Backends>,
    dependencies: web::Data<Vec<health::Dependency>>,
    verifier: web::Data<JwtVerifier>,
    registry: web::Data<Registry>,
    allowed: web::Data<allow::AllowedMethods>,
    limiter: web::Data<ratelimit::Limiter>,
    streams: web::Data<chats::Streams>,
    reads: web::Data<coalesce::Coalescer>,
    metrics: HttpMetrics,
    swagger_ui: bool,
}

impl AppState {
    /// Must run inside a tokio runtime: the lazy channel spawns its worker task.
    /// Fails if the gateway's metrics are already in `registry`.
    pub fn new(config: &GatewayConfig, registry: Registry) -> Result<Self, GatewayError> {
        Self::with_shutdown(config, registry, Shutdown::new())
    }

    /// [`AppState::new`] whose chat streams end when `shutdown` fires.
    pub fn with_shutdown(
        config: &GatewayConfig,
        registry: Registry,
        shutdown: Shutdown,
    ) -> Result<Self, GatewayError> {
        let grpc = GrpcMetrics::register(&registry)?;
        Self::with_grpc_metrics(config, registry, grpc, shutdown)
    }

    /// As [`AppState::with_shutdown`], counting backend calls in `grpc`
    /// (registered once per process, shared with the services in `huddle all`).
    pub fn with_grpc_metrics(
        config: &GatewayConfig,
        registry: Registry,
        grpc: GrpcMetrics,
        shutdown: Shutdown,
    ) -> Result<Self, GatewayError> {
        if config.jwt_secret.is_empty() {
            return Err(GatewayError::EmptySecret);
        }
        let channel = lazy_channel(&config.user_addr, config.request_timeout, &grpc)?;
        let meeting_channel = lazy_channel(&config.meeting_addr, config.request_timeout, &grpc)?;
        let recording_channel =
            lazy_channel(&config.recording_addr, config.request_timeout, &grpc)?;
        let chat_channel = lazy_channel(&config.chat_addr, config.request_timeout, &grpc)?;
        let metrics = HttpMetrics::register(&registry)?;
        let limiter = ratelimit::Limiter::new(&config.rate_limit, &registry)?;
        let reads = coalesce::Coalescer::new(config.coalesce_reads, &registry)?;
        Ok(Self {
            backends: web::Data::new(Backends {
                users: UserServiceClient::new(channel.clone()),
                meetings: MeetingServiceClient::new(meeting_channel.clone()),
                recordings: RecordingServiceClient::new(recording_channel.clone()),
                chats: ChatServiceClient::new(chat_channel.clone()),
                request_timeout: config.request_timeout,
            }),
            dependencies: web::Data::new(vec![
                health::Dependency {
                    service: USER_SERVICE,
                    client: HealthClient::new(channel),
                },
                health::Dependency {
                    service: MEETING_SERVICE,
                    client: HealthClient::new(meeting_channel),
                },
                health::Dependency {
                    service: RECORDING_SERVICE,
                    client: HealthClient::new(recording_channel),
                },
                health::Dependency {
                    service: CHAT_SERVICE,
                    client: HealthClient::new(chat_channel),
                },
            ]),
            verifier: web::Data::new(JwtVerifier::new(&config.jwt_secret)),
            registry: web::Data::new(registry),
            allowed: web::Data::new(allow::AllowedMethods::from_openapi()),
            limiter: web::Data::new(limiter),
            streams: web::Data::new(chats::Streams::new(config.streams.clone(), shutdown)),
            reads: web::Data::new(reads),
            metrics,
            swagger_ui: config.swagger_ui,
        })
    }
}

/// Connects on first use, so the gateway starts (and reports not ready)
/// while a service is still coming up. A DNS name (a headless Service) is
/// balanced over every pod it resolves to, re-resolved as pods come and go.
fn lazy_channel(
    addr: &str,
    request_timeout: Duration,
    grpc: &GrpcMetrics,
) -> Result<GrpcChannel, GatewayError> {
    let options = ChannelOptions {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: Some(request_timeout),
        metrics: Some(grpc.clone()),
        ..ChannelOptions::default()
    };
    balanced_channel(addr, options).map_err(|source| GatewayError::BadAddr {
        addr: addr.to_owned(),
        source,
    })
}

/// The actix application: routes, extractor configs and middleware. Public so
/// tests can drive it with `actix_web::test::init_service`.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics;
    let swagger_ui = state.swagger_ui;
    App::new()
        .app_data(state.backends)
        .app_data(state.dependencies)
        .app_data(state.verifier)
        .app_data(state.registry)
        .app_data(state.allowed)
        .app_data(state.limiter)
        .app_data(state.streams)
        .app_data(state.reads)
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(error::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        // `App::route` would move the method guard onto the resource, making
        // a wrong method a 404; a resource with a route makes it a 405.
        .service(route::resource("/healthz").route(web::get().to(health::healthz)))
        .service(route::resource("/readyz").route(web::get().to(health::readyz)))
        .service(route::resource("/metrics").route(web::get().to(metrics::render)))
        .configure(users::routes)
        .configure(meetings::routes)
        .configure(recordings::routes)
        .configure(chats::routes)
        .configure(|cfg| openapi::routes(cfg, swagger_ui))
        .default_service(web::to(error::no_route))
        // Listed innermost first: limits are counted before any handler
        // runs, the envelope is applied before metrics record the status,
        // and the request id wraps everything.
        .wrap(from_fn(ratelimit::middleware))
        .wrap(from_fn(error::ensure_envelope))
        .wrap(from_fn(move |req, next| {
            metrics::middleware(metrics.clone(), req, next)
        }))
        .wrap(from_fn(request_id::middleware))
}

/// Binds the listener (port 0 picks a free one) and returns the bound address
/// and a future that serves until `shutdown` fires, then stops accepting,
/// lets in-flight requests finish (up to 30 s) and returns.
pub async fn bind(
    config: GatewayConfig,
    registry: Registry,
    grpc: GrpcMetrics,
    shutdown: Shutdown,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = Result<(), GatewayError>> + Send + 'static,
    ),
    GatewayError,
> {
    let state = AppState::with_grpc_metrics(&config, registry, grpc, shutdown.clone())?;
    let bind_error = |source| GatewayError::Bind {
        addr: config.http_addr,
        source,
    };
    let listener = TcpListener::bind(config.http_addr).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let server = HttpServer::new(move || app(state.clone()))
        .workers(config.workers.max(1))
        // The process owns signals; it stops us through `shutdown`.
        .disable_signals()
        .shutdown_timeout(GRACEFUL_SHUTDOWN_SECS)
        .listen(listener)
        .map_err(bind_error)?
        .run();
    tracing::info!(%addr, user_addr = %config.user_addr, meeting_addr = %config.meeting_addr,
        recording_addr = %config.recording_addr, chat_addr = %config.chat_addr, "gateway listening");

    let serve = async move {
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => return result.map_err(GatewayError::Serve),
            () = shutdown.wait() => {}
        }
        tracing::info!("gateway draining");
        // The stop command is sent on the call; the server future must keep
        // being polled to act on it, so both are awaited together.
        let (_, result) = tokio::join!(handle.stop(true), server);
        result.map_err(GatewayError::Serve)?;
        tracing::info!("gateway stopped");
        Ok(())
    };
    Ok((addr, serve))
}

/// [`bind`], then serve until `shutdown`.
pub async fn serve(
    config: GatewayConfig,
    registry: Registry,
    grpc: GrpcMetrics,
    shutdown: Shutdown,
) -> Result<(), GatewayError> {
    let (_, serving) = bind(config, registry, grpc, shutdown).await?;
    serving.await
}

#[cfg(test)]
mod tests;
