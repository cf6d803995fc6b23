//! chat-service: chat messages of meetings, the recent-chat window, the
//! message count and the live stream. Owns database `huddle_chat`; asks
//! user-service (`huddle.user.v1`) for the posters' display data.

// The cache-aside futures nest deeply (handler → flight → lease → loader);
// their layout needs more than the default recursion limit of 128.
#![recursion_limit = "256"]

use std::time::Duration;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_db::DbError;
use huddle_proto::chat::v1::chat_service_server::ChatServiceServer;
use huddle_serve::{
    Kit, ServeError, ServiceConfig, Shared,
    users::{Users, user_client},
};

pub mod cache;
pub mod db;
mod error;
mod grpc;
pub mod schema;
pub mod seed;
pub mod stream;

pub use grpc::ChatApi;
pub use stream::{Hubs, StreamConfig};

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_chat";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/chat");

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub service: ServiceConfig,
    /// Where user-service is dialled: "host:port" or "http://host:port".
    pub user_addr: String,
    /// Deadline of each call to user-service.
    pub user_call_timeout: Duration,
    pub stream: StreamConfig,
}

/// A bound, not yet running, chat service.
pub struct Bound {
    pub service: huddle_serve::Bound,
    /// Its live streams (tests read how many are open).
    pub hubs: Hubs,
}

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `service.server` runs it until shutdown.
pub async fn bind(config: &ChatConfig, shared: Shared) -> Result<Bound, ServeError> {
    let kit = Kit::bind("chat", MIGRATIONS, &config.service, shared).await?;
    let users = Users::new(user_client(
        &config.user_addr,
        config.user_call_timeout,
        kit.grpc_metrics(),
    )?);
    let hubs = Hubs::new(
        kit.db.clone(),
        kit.outbox.clone(),
        users.clone(),
        config.stream.clone(),
        kit.shutdown(),
    );
    let api = ChatApi::new(
        kit.db.clone(),
        kit.cache.clone(),
        kit.outbox.clone(),
        users,
        hubs.clone(),
    );
    // The listener that wakes this replica's streams runs until shutdown.
    tokio::spawn(stream::listen(hubs.clone(), kit.shutdown()));
    let service = kit.serve(ChatServiceServer::new(api))?;
    Ok(Bound { service, hubs })
}

pub async fn serve(config: &ChatConfig, shared: Shared) -> Result<(), ServeError> {
    bind(config, shared).await?.service.server.await
}

/// Creates the database if missing and runs pending migrations.
pub async fn migrate(server_url: &str) -> Result<usize, DbError> {
    huddle_db::migrate_database(server_url, DATABASE_NAME, MIGRATIONS).await
}
