//! The standard health service, plus a `liveness` entry that is SERVING
//! while the process answers at all.
//!
//! A service is SERVING while it can answer reads: with its Postgres
//! answering and holding every migration the binary embeds, or — Postgres
//! unreachable, as in a 60–120 s managed-database failover — while Redis
//! answers, the schema was last seen current and no pending invalidation
//! holds its reads (then cached reads are right: no write can commit).
//! Writes and cache misses answer 503 meanwhile. A failover therefore no
//! longer takes every pod out of its Service. Redis alone never makes a
//! service unready.

use std::time::Duration;

use cache_core::Cache;
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

/// Bound on each probe of a check: a hung Postgres or Redis must not keep
/// the reported status from following what the service can do.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a check found the service able to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Postgres answers and holds the binary's schema.
    Full,
    /// Postgres is unreachable; reads are answered from Redis.
    CachedReads(String),
    NotServing(String),
}

/// Health reporting for one service, driven by its database and cache.
pub struct Readiness {
    health: HealthReporter,
    db: Database,
    /// The service's scoped cache: whether its reads are held.
    cache: Cache,
    service: &'static str,
    schema: Option<EmbeddedMigrations>,
    /// The last schema check's answer (`None`: never read). Postgres
    /// unreachable, a schema seen behind stays behind: cached reads are
    /// served only by a binary that matched it.
    schema_current: Option<bool>,
    mode: Option<Mode>,
}

impl Readiness {
    /// Checks once and reports the result before the server starts, so a
    /// fresh process is never "unknown" to a readiness probe. With
    /// `schema`, NOT_SERVING also while the database lacks any of those
    /// migrations (a rollout that got ahead of its migration Job), so new
    /// pods take no traffic until `huddle migrate` has run.
    pub async fn start(
        db: Database,
        cache: Cache,
        service: &'static str,
        schema: Option<EmbeddedMigrations>,
    ) -> (Self, HealthServer<impl Health>) {
        let (health, server) = health_reporter();
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let schema_current = schema.is_none().then_some(true);
        let mut readiness = Self {
            health,
            db,
            cache,
            service,
            schema,
            schema_current,
            mode: None,
        };
        readiness.check().await;
        (readiness, server)
    }

    /// Re-checks every 5 s while fully serving (every second otherwise,
    /// so a returning Postgres is noticed soon) until `shutdown`.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let pause = Duration::from_secs(if self.mode == Some(Mode::Full) { 5 } else { 1 });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.clone().wait() => break,
            }
            self.check().await;
        }
    }

    async fn check(&mut self) {
        let mode = match tokio::time::timeout(PROBE_TIMEOUT, self.db.ping()).await {
            Ok(Ok(())) => self.schema_mode().await,
            Ok(Err(e)) => self.without_database(e.to_string()).await,
            Err(_) => self.without_database("no answer".to_owned()).await,
        };
        // Compared by kind: an error's text may change from one check to
        // the next without anything to report.
        let same =
            self.mode.as_ref().map(std::mem::discriminant) == Some(std::mem::discriminant(&mode));
        if same {
            return;
        }
        let status = match &mode {
            Mode::Full => ServingStatus::Serving,
            Mode::CachedReads(why) => {
                tracing::warn!(
                    service = self.service,
                    "{why}; SERVING cached reads, writes answer 503"
                );
                ServingStatus::Serving
            }
            Mode::NotServing(why) => {
                tracing::warn!(service = self.service, "{why}; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        self.health.set_service_status(self.service, status).await;
        self.health.set_service_status("", status).await;
        self.mode = Some(mode);
    }

    async fn schema_mode(&mut self) -> Mode {
        let Some(schema) = &self.schema else {
            return Mode::Full;
        };
        match self.db.pending_migrations(schema).await {
            Ok(0) => {
                self.schema_current = Some(true);
                Mode::Full
            }
            Ok(n) => {
                self.schema_current = Some(false);
                Mode::NotServing(format!(
                    "schema behind the binary: {n} migration(s) pending"
                ))
            }
            Err(e) => Mode::NotServing(format!("schema version unknown: {e}")),
        }
    }

    /// Postgres does not answer: whether reads can still be answered from
    /// Redis, and are right when they are.
    async fn without_database(&self, error: String) -> Mode {
        let why = format!("database unreachable: {error}");
        if self.schema_current != Some(true) {
            return Mode::NotServing(format!("{why}; schema not seen current"));
        }
        if self.cache.reads_held() {
            return Mode::NotServing(format!("{why}; reads held for pending invalidations"));
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.cache.ping()).await {
            Ok(Ok(_)) => Mode::CachedReads(why),
            Ok(Err(e)) => Mode::NotServing(format!("{why}; redis unreachable: {e}")),
            Err(_) => Mode::NotServing(format!("{why}; redis does not answer")),
        }
    }
}
