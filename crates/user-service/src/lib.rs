//! user-service: users, profile lookups, email lookup. Owns database
//! `huddle_user`; everyone else asks over gRPC (`huddle.user.v1`).

// The cache-aside futures nest deeply (handler → flight → lease → loader);
// their layout needs more than the default recursion limit of 128.
#![recursion_limit = "256"]

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_db::DbError;
use huddle_proto::user::v1::user_service_server::UserServiceServer;
use huddle_serve::{Bound, Kit, ServeError, ServiceConfig, Shared};

mod cache;
pub mod db;
mod error;
mod grpc;
pub mod schema;
pub mod seed;
mod validate;

pub use grpc::UserApi;

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_user";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/user");

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `server` runs it until shutdown.
pub async fn bind(config: &ServiceConfig, shared: Shared) -> Result<Bound, ServeError> {
    let kit = Kit::bind("user", MIGRATIONS, config, shared).await?;
    let api = UserApi::new(kit.db.clone(), kit.cache.clone(), kit.outbox.clone());
    kit.serve(UserServiceServer::new(api))
}

pub async fn serve(config: &ServiceConfig, shared: Shared) -> Result<(), ServeError> {
    bind(config, shared).await?.server.await
}

/// Creates the database if missing and runs pending migrations.
pub async fn migrate(server_url: &str) -> Result<usize, DbError> {
    huddle_db::migrate_database(server_url, DATABASE_NAME, MIGRATIONS).await
}
