//! recording-service: recordings of meetings, driven by LiveKit's egress
//! webhooks. Owns database `huddle_recording`. The gateway hands it each
//! webhook as received (body and `Authorization`); it verifies the
//! signature itself, so the LiveKit secret never leaves it.

// The cache-aside futures nest deeply (handler → flight → lease → loader);
// their layout needs more than the default recursion limit of 128.
#![recursion_limit = "256"]

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_db::DbError;
use huddle_proto::recording::v1::recording_service_server::RecordingServiceServer;
use huddle_serve::{Bound, Kit, ServeError, ServiceConfig, Shared};

mod cache;
pub mod control;
pub mod db;
pub mod egress;
mod error;
mod grpc;
pub mod livekit;
pub mod media;
pub mod metrics;
pub mod reconcile;
pub mod schema;

pub use grpc::RecordingApi;
pub use livekit::LivekitKeys;
pub use media::MediaConfig;
pub use metrics::WebhookMetrics;

/// The database this service owns on the shared Postgres server.
pub const DATABASE_NAME: &str = "huddle_recording";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/recording");

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub service: ServiceConfig,
    /// The key and secret LiveKit signs its webhooks with.
    pub livekit: LivekitKeys,
    /// Where LiveKit is and how long room tokens last.
    pub media: MediaConfig,
}

/// Binds the listener (port 0 allowed) and builds the server; awaiting
/// `server` runs it until shutdown. `metrics` counts webhooks by outcome
/// (registered by the caller in the process's registry).
pub async fn bind(
    config: &RecordingConfig,
    shared: Shared,
    metrics: WebhookMetrics,
) -> Result<Bound, ServeError> {
    let kit = Kit::bind("recording", MIGRATIONS, &config.service, shared).await?;
    let media = &config.media;
    let api_url = media.api_url.as_deref().or(media.url.as_deref());
    let reconciler = control::egress_client(api_url, &config.livekit).map(|client| {
        reconcile::EgressReconciler::new(
            kit.db.untracked(),
            kit.outbox.clone(),
            client,
            media.reconcile_after,
            metrics.reconciled.clone(),
        )
    });
    let api = RecordingApi::new(
        kit.db.clone(),
        kit.cache.clone(),
        kit.outbox.clone(),
        config.livekit.clone(),
        config.media.clone(),
        metrics,
    );
    let kit = match reconciler {
        Some(reconciler) => kit.with_relay(reconciler, reconcile::POLICY),
        None => kit,
    };
    kit.serve(RecordingServiceServer::new(api))
}

/// Creates the database if missing and runs pending migrations.
pub async fn migrate(server_url: &str) -> Result<usize, DbError> {
    huddle_db::migrate_database(server_url, DATABASE_NAME, MIGRATIONS).await
}
