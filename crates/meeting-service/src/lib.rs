//! meeting-service: meetings, invite codes, participants, host stats. Owns
//! database `huddle_meeting`; asks user-service (`huddle.user.v1`) for the
//! display data of hosts and participants, one batch call per answer.

// The cache-aside futures nest deeply (handler → flight → lease → loader);
// their layout needs more than the default recursion limit of 128.
#![recursion_limit = "256"]

use std::{sync::Arc, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_db::DbError;
use huddle_proto::meeting::v1::meeting_service_server::MeetingServiceServer;
use huddle_serve::{Kit, ServeError, ServiceConfig, Shared};

mod cache;
pub mod cascade;
pub mod db;
mod error;
mod grpc;
pub mod invite;
pub mod recordings;
pub mod schema;
pub mod seed;
mod users;
mod validate;

pub use cascade::{Cascade, CascadeTarget};
pub use grpc::MeetingApi;
pub use users::user_client;

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_meeting";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/meeting");

#[derive(Debug, Clone)]
pub struct MeetingConfig {
    pub service: ServiceConfig,
    /// Where user-service is dialled: "host:port" or "http://host:port".
    pub user_addr: String,
    /// Deadline of each call to user-service (and to the cascade's targets).
    pub user_call_timeout: Duration,
    /// Where recording-service is dialled for the deletion cascade and room
    /// tokens; `None` only in tests that run meeting-service without it
    /// (joins then carry no token, media tokens are 503).
    pub recording_addr: Option<String>,
    /// Where chat-service is dialled for the deletion cascade (`None`: no
    /// chat-service in this deployment, e.g. a test of the meeting service
    /// alone).
    pub chat_addr: Option<String>,
}

/// A bound, not yet running, meeting service.
pub struct Bound {
    pub service: huddle_serve::Bound,
    pub cascade: Cascade,
}

/// The services that hold data of a meeting and must delete it when the
/// meeting is deleted (see `cascade`): a [`CascadeTarget`] over each one's
/// gRPC client (their addresses come in through [`MeetingConfig`]).
fn cascade_targets(
    config: &MeetingConfig,
    kit: &Kit,
    recordings: Option<&recordings::Recordings>,
) -> Result<Vec<Arc<dyn CascadeTarget>>, ServeError> {
    let mut targets: Vec<Arc<dyn CascadeTarget>> = Vec::new();
    if let Some(recordings) = recordings {
        targets.push(Arc::new(recordings.clone()));
    }
    if let Some(addr) = &config.chat_addr {
        targets.push(Arc::new(cascade::ChatTarget::new(
            addr,
            config.user_call_timeout,
            kit.grpc_metrics(),
        )?));
    }
    Ok(targets)
}

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `service.server` runs it until shutdown.
pub async fn bind(config: &MeetingConfig, shared: Shared) -> Result<Bound, ServeError> {
    let kit = Kit::bind("meeting", MIGRATIONS, &config.service, shared).await?;
    let users = users::Users::new(user_client(
        &config.user_addr,
        config.user_call_timeout,
        kit.grpc_metrics(),
    )?);
    let recordings = (config.recording_addr.as_deref())
        .map(|addr| {
            let timeout = config.user_call_timeout;
            recordings::Recordings::new(addr, timeout, kit.grpc_metrics())
        })
        .transpose()?;
    let targets = cascade_targets(config, &kit, recordings.as_ref())?;
    let cascade = Cascade::new(kit.db.untracked(), targets);
    let api = MeetingApi::new(
        cache::Sources {
            db: kit.db.clone(),
            cache: kit.cache.clone(),
            users,
        },
        kit.outbox.clone(),
        cascade.clone(),
        recordings,
    );
    // Deletes deleted meetings' data in the services that own it.
    let service = kit
        .with_relay(cascade.clone(), cascade::RELAY_POLICY)
        .serve(MeetingServiceServer::new(api))?;
    Ok(Bound { service, cascade })
}

pub async fn serve(config: &MeetingConfig, shared: Shared) -> Result<(), ServeError> {
    bind(config, shared).await?.service.server.await
}

/// Creates the database if missing and runs pending migrations.
pub async fn migrate(server_url: &str) -> Result<usize, DbError> {
    huddle_db::migrate_database(server_url, DATABASE_NAME, MIGRATIONS).await
}
