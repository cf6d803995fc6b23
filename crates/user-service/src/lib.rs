//! user-service: users, profile lookups, email lookup. Owns database
//! `huddle_user`; everyone else asks over gRPC (`huddle.user.v1`).

use std::{future::Future, net::SocketAddr, sync::Arc};

use cache_core::Cache;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_common::Shutdown;
use huddle_db::{Database, DbError, outbox::Outbox, serving::Readiness};
use huddle_proto::user::v1::user_service_server::UserServiceServer;
use tokio_stream::wrappers::TcpListenerStream;

mod cache;
pub mod db;
mod error;
mod grpc;
pub mod schema;
pub mod seed;
mod validate;

pub use grpc::UserApi;
pub use huddle_db::outbox::Failpoints;

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_user";

/// The gRPC service name, as health checks and reflection report it.
pub const SERVICE_NAME: &str = "huddle.user.v1.UserService";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/user");

#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Where the gRPC server listens.
    pub listen_addr: SocketAddr,
    /// Full URL of this service's own database.
    pub database_url: String,
    pub db_pool_size: usize,
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
    #[error("reflection setup failed: {0}")]
    Reflection(String),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound, not yet running, user service.
pub struct Bound<F> {
    pub addr: SocketAddr,
    /// The service's database handle (tests read its checkout count).
    pub db: Database,
    pub outbox: Outbox,
    pub failpoints: Arc<Failpoints>,
    pub server: F,
}

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `server` runs it until `shutdown`, then drains in-flight calls and closes
/// the pools.
pub async fn bind(
    config: &UserConfig,
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

    let reflection = huddle_db::serving::reflection().map_err(ServeError::Reflection)?;
    let outbox = Outbox::new(db.clone(), cache.clone(), "user");
    let failpoints = Arc::new(Failpoints::default());
    let api = UserApi::new(
        db.clone(),
        cache.clone(),
        outbox.clone(),
        failpoints.clone(),
    );
    let (readiness, health_service) =
        Readiness::start_with_schema(db.clone(), SERVICE_NAME, Some(MIGRATIONS)).await;

    let watched_db = db.clone();
    let relay = outbox.clone();
    let server = async move {
        // Applies invalidations a crash or a Redis outage left behind.
        let relay = tokio::spawn(relay.run_relay(shutdown.clone()));
        // Ready while Postgres answers; Redis is an optimisation and never
        // makes the service unready.
        let readiness = tokio::spawn(readiness.run(shutdown.clone()));
        tracing::info!(%addr, "user service listening");
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(UserServiceServer::new(api))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait())
            .await;
        readiness.abort();
        relay.abort();
        watched_db.close();
        cache.close();
        tracing::info!("user service stopped");
        Ok(result?)
    };
    Ok(Bound {
        addr,
        db,
        outbox,
        failpoints,
        server,
    })
}

pub async fn serve(
    config: &UserConfig,
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
