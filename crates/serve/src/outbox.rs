//! The invalidation outbox: a write records the cache invalidation it causes
//! in the same transaction as its data change, so the invalidation cannot be
//! lost. After commit the write applies it at once; if Redis refuses (down,
//! paused, breaker open) or the process dies first, the relay applies it
//! later — when woken, when Redis recovers, on its idle tick, or at the next
//! start.
//!
//! Applying twice is harmless (DEL is idempotent), so replicas may race on
//! the same rows without locking.

use std::{sync::Arc, time::Duration};

use cache_core::{Cache, CacheError, Invalidation};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::{Database, DbError};
use tokio::sync::Notify;

use crate::relay::{self, Pass, Relay, Wake};

// The one declaration of the table every service's migrations create; the
// services' `schema.rs` leave it out and their drift checks add this text.
diesel::table! {
    cache_outbox (id) {
        id -> Int8,
        invalidation -> Text,
        created_at -> Timestamptz,
    }
}

/// The `table!` text above, for schema drift checks.
pub const SCHEMA_RS: &str = "diesel::table! {\n    cache_outbox (id) {\n        id -> Int8,\n        invalidation -> Text,\n        created_at -> Timestamptz,\n    }\n}\n";

/// Rows applied per relay query.
const BATCH: i64 = 100;

/// Kept short: until the relay succeeds, other replicas may still read a
/// value a pending invalidation would delete.
pub const RELAY_POLICY: relay::Policy = relay::Policy {
    idle: Duration::from_secs(5),
    first_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(1),
};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("redis refused the invalidation: {0}")]
    Cache(#[from] CacheError),
}

/// Fault injection for tests of the crash-safety guarantees. Off in
/// production; nothing sets it outside tests.
#[derive(Debug, Default)]
pub struct Failpoints {
    /// Fail the request right after its transaction commits, before the
    /// invalidation is applied — as if the process died there.
    pub crash_after_commit: std::sync::atomic::AtomicBool,
}

/// An invalidation recorded in a transaction that has committed.
#[must_use = "apply it after the commit, or the relay applies it only on its next tick"]
pub struct Recorded {
    id: i64,
    invalidation: Invalidation,
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    cache: Cache,
    service: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: Database, cache: Cache, service: &'static str) -> Self {
        Self {
            db,
            cache,
            service,
            wake: Arc::default(),
        }
    }

    /// Records `invalidation` inside the caller's open transaction.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        invalidation: Invalidation,
    ) -> Result<Recorded, DbError> {
        let json = serde_json::to_string(&invalidation)
            .map_err(|e| DbError::Unavailable(format!("cannot encode invalidation: {e}")))?;
        let id = diesel::insert_into(cache_outbox::table)
            .values(cache_outbox::invalidation.eq(json))
            .returning(cache_outbox::id)
            .get_result(conn)
            .await?;
        Ok(Recorded { id, invalidation })
    }

    /// After commit: apply now, so the write's own response is never
    /// followed by a stale read. On failure the row stays for the relay.
    pub async fn apply(&self, recorded: Recorded) {
        match self.cache.invalidate(&recorded.invalidation).await {
            Ok(_) => {
                self.cache.metrics().invalidation_applied(self.service);
                if let Err(e) = self.delete(&[recorded.id]).await {
                    // Applied but not deleted: the relay applies it again,
                    // which is harmless.
                    tracing::warn!(error = %e, "outbox row applied but not deleted");
                }
            }
            Err(e) => {
                tracing::warn!(write = ?recorded.invalidation.write, error = %e,
                    "invalidation deferred to the outbox relay");
                self.wake.notify_one();
            }
        }
    }

    /// Applies every pending row, oldest first. Stops at the first Redis
    /// failure. Returns how many rows it applied.
    ///
    /// A row this binary cannot decode was written by a newer version
    /// during a rolling update: it is left for a binary that can apply it,
    /// and skipped so it never holds back the rows behind it.
    pub async fn drain(&self) -> Result<usize, OutboxError> {
        let (mut applied, mut skipped) = (0, 0_i64);
        let mut after = 0_i64;
        loop {
            let mut conn = self.db.conn().await?;
            let rows: Vec<(i64, String)> = cache_outbox::table
                .select((cache_outbox::id, cache_outbox::invalidation))
                .filter(cache_outbox::id.gt(after))
                .order(cache_outbox::id)
                .limit(BATCH)
                .load(&mut conn)
                .await
                .map_err(DbError::from)?;
            drop(conn);
            let Some((last, _)) = rows.last() else {
                self.cache
                    .metrics()
                    .set_invalidations_pending(self.service, skipped);
                return Ok(applied);
            };
            after = *last;
            let mut done = Vec::with_capacity(rows.len());
            let mut failure = None;
            for (id, json) in &rows {
                let Ok(invalidation) = serde_json::from_str::<Invalidation>(json) else {
                    tracing::warn!(id, "outbox row from another version left for it to apply");
                    skipped += 1;
                    continue;
                };
                match self.cache.invalidate(&invalidation).await {
                    Ok(_) => {
                        self.cache.metrics().invalidation_applied(self.service);
                        done.push(*id);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            self.delete(&done).await?;
            applied += done.len();
            if let Some(e) = failure {
                self.update_pending().await;
                return Err(e.into());
            }
        }
    }

    /// Runs the relay until `shutdown`.
    pub async fn run_relay(self, shutdown: huddle_common::Shutdown) {
        relay::run(self, RELAY_POLICY, shutdown).await;
    }

    pub async fn pending(&self) -> Result<i64, DbError> {
        let mut conn = self.db.conn().await?;
        Ok(cache_outbox::table.count().get_result(&mut conn).await?)
    }

    async fn update_pending(&self) {
        if let Ok(n) = self.pending().await {
            self.cache
                .metrics()
                .set_invalidations_pending(self.service, n);
        }
    }

    async fn delete(&self, ids: &[i64]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.conn().await?;
        diesel::delete(cache_outbox::table.filter(cache_outbox::id.eq_any(ids)))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

impl Relay for Outbox {
    fn name(&self) -> &'static str {
        self.service
    }

    async fn drain(&self) -> Result<Pass, String> {
        match Outbox::drain(self).await {
            Ok(done) => Ok(Pass { done, failed: 0 }),
            // Redis refused: the rows stay, the pass counts as failed.
            Err(OutboxError::Cache(_)) => Ok(Pass { done: 0, failed: 1 }),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn woken(&self) -> Wake {
        tokio::select! {
            // A write just failed to apply: Redis is likely still down.
            _ = self.wake.notified() => Wake::AfterBackoff,
            // The breaker just closed: Redis is back, retry at once.
            _ = self.cache.recovered() => Wake::Now,
        }
    }
}
