//! The standard health service, reporting SERVING exactly while the
//! service's Postgres answers (Redis is an optimisation and never makes a
//! service unready).

use std::time::Duration;

use huddle_common::Shutdown;
use huddle_db::Database;
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::{HealthReporter, health_reporter},
};

/// Health reporting for one service, driven by its database.
pub struct Readiness {
    health: HealthReporter,
    db: Database,
    service: &'static str,
    serving: bool,
}

impl Readiness {
    /// Checks the database once and reports the result before the server
    /// starts, so a fresh process is never "unknown" to a readiness probe.
    /// Returns the health service to add to the server.
    pub async fn start(db: Database, service: &'static str) -> (Self, HealthServer<impl Health>) {
        let (health, server) = health_reporter();
        let mut readiness = Self {
            health,
            db,
            service,
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
        let up = self.db.ping().await.is_ok();
        if was != Some(up) {
            let status = if up {
                ServingStatus::Serving
            } else {
                tracing::warn!(
                    service = self.service,
                    "database unreachable; reporting NOT_SERVING"
                );
                ServingStatus::NotServing
            };
            self.health.set_service_status(self.service, status).await;
            self.health.set_service_status("", status).await;
        }
        up
    }
}
