//! meeting-service: meetings, invite codes, participants, host stats. Owns
//! database `huddle_meeting`; asks user-service (`huddle.user.v1`) for the
//! display data of hosts and participants, one batch call per answer.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use cache_core::Cache;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_common::{Shutdown, grpc_client::ChannelError};
use huddle_db::{Database, DbError, outbox::Outbox, serving::Readiness};
use huddle_proto::meeting::v1::meeting_service_server::MeetingServiceServer;
use tokio_stream::wrappers::TcpListenerStream;

mod cache;
pub mod cascade;
pub mod db;
mod error;
mod grpc;
pub mod invite;
pub mod schema;
pub mod seed;
mod users;
mod validate;

pub use cascade::{Cascade, CascadeTarget};
pub use grpc::MeetingApi;
pub use huddle_db::outbox::Failpoints;
pub use users::user_client;

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_meeting";

/// The gRPC service name, as health checks and reflection report it.
pub const SERVICE_NAME: &str = "huddle.meeting.v1.MeetingService";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/meeting");

#[derive(Debug, Clone)]
pub struct MeetingConfig {
    /// Where the gRPC server listens.
    pub listen_addr: SocketAddr,
    /// Full URL of this service's own database.
    pub database_url: String,
    pub db_pool_size: usize,
    /// Where user-service is dialled: "host:port" or "http://host:port".
    pub user_addr: String,
    /// Deadline of each call to user-service.
    pub user_call_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("user service address: {0}")]
    UserAddr(#[from] ChannelError),
    #[error("reflection setup failed: {0}")]
    Reflection(String),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound, not yet running, meeting service.
pub struct Bound<F> {
    pub addr: SocketAddr,
    /// The service's database handle (tests read its checkout count).
    pub db: Database,
    pub outbox: Outbox,
    pub cascade: Cascade,
    pub failpoints: Arc<Failpoints>,
    pub server: F,
}

/// The services that hold data of a meeting and must delete it when the
/// meeting is deleted (see `cascade`). Empty until chat-service and
/// recording-service exist: add a [`CascadeTarget`] over each one's gRPC
/// client here (their addresses come in through [`MeetingConfig`]).
fn cascade_targets(_config: &MeetingConfig) -> Vec<Arc<dyn CascadeTarget>> {
    Vec::new()
}

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `server` runs it until `shutdown`, then drains in-flight calls and closes
/// the pools.
pub async fn bind(
    config: &MeetingConfig,
    cache: Cache,
    shutdown: Shutdown,
) -> Result<Bound<impl Future<Output = Result<(), ServeError>> + Send + 'static>, ServeError> {
    let (listener, addr) = huddle_db::serving::listen(config.listen_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen_addr,
            source,
        })?;
    let db = Database::connect(&config.database_url, config.db_pool_size)?;
    let users = users::Users::new(user_client(&config.user_addr, config.user_call_timeout)?);

    let reflection = huddle_db::serving::reflection().map_err(ServeError::Reflection)?;
    let outbox = Outbox::new(db.clone(), cache.clone(), "meeting");
    let cascade = Cascade::new(db.clone(), cascade_targets(config));
    let failpoints = Arc::new(Failpoints::default());
    let api = MeetingApi::new(
        cache::Sources {
            db: db.clone(),
            cache: cache.clone(),
            users,
        },
        outbox.clone(),
        cascade.clone(),
        failpoints.clone(),
    );
    let (readiness, health_service) =
        Readiness::start_with_schema(db.clone(), SERVICE_NAME, Some(MIGRATIONS)).await;

    let watched_db = db.clone();
    let relay = outbox.clone();
    let deletions = cascade.clone();
    let server = async move {
        // Applies invalidations a crash or a Redis outage left behind.
        let relay = tokio::spawn(relay.run_relay(shutdown.clone()));
        // Deletes deleted meetings' data in the services that own it.
        let deletions = tokio::spawn(deletions.run_relay(shutdown.clone()));
        // Ready while Postgres answers. Neither Redis (an optimisation) nor
        // user-service (only display names depend on it) makes it unready.
        let readiness = tokio::spawn(readiness.run(shutdown.clone()));
        tracing::info!(%addr, "meeting service listening");
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(MeetingServiceServer::new(api))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait())
            .await;
        readiness.abort();
        relay.abort();
        deletions.abort();
        watched_db.close();
        cache.close();
        tracing::info!("meeting service stopped");
        Ok(result?)
    };
    Ok(Bound {
        addr,
        db,
        outbox,
        cascade,
        failpoints,
        server,
    })
}

pub async fn serve(
    config: &MeetingConfig,
    cache: Cache,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    bind(config, cache, shutdown).await?.server.await
}

/// Creates the database if missing and runs pending migrations.
pub async fn migrate(server_url: &str) -> Result<usize, DbError> {
    huddle_db::create_database_if_missing(server_url, DATABASE_NAME).await?;
    huddle_db::run_migrations(
        &huddle_db::database_url(server_url, DATABASE_NAME)?,
        MIGRATIONS,
    )
    .await
}
