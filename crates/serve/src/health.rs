//! The standard health service, reporting SERVING exactly while the
//! service's Postgres answers and holds every migration the binary embeds
//! (Redis is an optimisation and never makes a service unready), plus a
//! `liveness` entry that is SERVING while the process answers at all.

use std::time::Duration;

use diesel_migrations::EmbeddedMigrations;
use huddle_common::Shutdown;
use huddle_db::Database;
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::{HealthReporter, health_reporter},
};

/// A health-service entry that is SERVING for as long as the process
/// answers gRPC at all: the target of the pods' liveness probe, which must
/// catch a wedged process but not restart pods because Postgres is down.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Health reporting for one service, driven by its database.
pub struct Readiness {
    health: HealthReporter,
    db: Database,
    service: &'static str,
    schema: Option<EmbeddedMigrations>,
    serving: bool,
}

impl Readiness {
    /// Checks the database once and reports the result before the server
    /// starts, so a fresh process is never "unknown" to a readiness probe.
    /// With `schema`, NOT_SERVING also while the database lacks any of
    /// those migrations (a rollout that got ahead of its migration Job), so
    /// new pods take no traffic until `huddle migrate` has run.
    pub async fn start(
        db: Database,
        service: &'static str,
        schema: Option<EmbeddedMigrations>,
    ) -> (Self, HealthServer<impl Health>) {
        let (health, server) = health_reporter();
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let mut readiness = Self {
            health,
            db,
            service,
            schema,
            serving: false,
        };
        readiness.serving = readiness.check(None).await;
        (readiness, server)
    }

    /// Re-checks every 5 s while serving (every second while not) until
    /// `shutdown`.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let pause = Duration::from_secs(if self.serving { 5 } else { 1 });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.clone().wait() => break,
            }
            self.serving = self.check(Some(self.serving)).await;
        }
    }

    async fn check(&self, was: Option<bool>) -> bool {
        let mut why = None;
        if let Err(e) = self.db.ping().await {
            why = Some(format!("database unreachable: {e}"));
        } else if let Some(schema) = &self.schema {
            match self.db.pending_migrations(schema).await {
                Ok(0) => {}
                Ok(n) => {
                    why = Some(format!(
                        "schema behind the binary: {n} migration(s) pending"
                    ));
                }
                Err(e) => why = Some(format!("schema version unknown: {e}")),
            }
        }
        let up = why.is_none();
        if was != Some(up) {
            let status = if let Some(why) = why {
                tracing::warn!(service = self.service, "{why}; reporting NOT_SERVING");
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            self.health.set_service_status(self.service, status).await;
            self.health.set_service_status("", status).await;
        }
        up
    }
}
