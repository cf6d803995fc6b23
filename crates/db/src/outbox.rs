//! The invalidation outbox: a write records the cache invalidation it causes
//! in the same transaction as its data change, so the invalidation cannot be
//! lost. After commit the write applies it at once; if Redis refuses (down,
//! paused, breaker open) or the process dies first, the relay applies it
//! later — on its next tick, or at the next start.
//!
//! Applying twice is harmless (DEL is idempotent), so replicas may race on
//! the same rows without locking.

use std::{sync::Arc, time::Duration};

use cache_core::{Cache, Invalidation};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_common::Shutdown;
use tokio::sync::Notify;

use crate::{Database, DbError};

diesel::table! {
    cache_outbox (id) {
        id -> Int8,
        invalidation -> Text,
        created_at -> Timestamptz,
    }
}

/// Rows applied per relay query.
const BATCH: i64 = 100;
/// How often the relay looks for leftovers when nobody wakes it.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// Kept short: until the relay succeeds, other replicas may still read a
/// value this invalidation would delete.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
    pub async fn drain(&self) -> Result<usize, DbError> {
        let mut applied = 0;
        loop {
            let mut conn = self.db.conn().await?;
            let rows: Vec<(i64, String)> = cache_outbox::table
                .select((cache_outbox::id, cache_outbox::invalidation))
                .order(cache_outbox::id)
                .limit(BATCH)
                .load(&mut conn)
                .await?;
            drop(conn);
            if rows.is_empty() {
                self.cache
                    .metrics()
                    .set_invalidations_pending(self.service, 0);
                return Ok(applied);
            }
            let mut done = Vec::with_capacity(rows.len());
            let mut failure = None;
            for (id, json) in &rows {
                match serde_json::from_str::<Invalidation>(json) {
                    Ok(invalidation) => match self.cache.invalidate(&invalidation).await {
                        Ok(_) => {
                            self.cache.metrics().invalidation_applied(self.service);
                            done.push(*id);
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    },
                    Err(e) => {
                        // Written by an incompatible version; nothing can
                        // apply it, so keep it out of the way of the rest.
                        tracing::error!(id, error = %e, "dropping undecodable outbox row");
                        done.push(*id);
                    }
                }
            }
            self.delete(&done).await?;
            applied += done.len();
            if let Some(e) = failure {
                self.update_pending().await;
                return Err(DbError::Unavailable(format!("redis: {e}")));
            }
        }
    }

    /// Runs until `shutdown`: drains at start (writes whose process died
    /// after commit), then whenever woken or every few seconds, backing off
    /// while Redis refuses.
    pub async fn run_relay(self, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = match self.drain().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(applied = n, service = self.service, "outbox drained");
                    }
                    backoff = Duration::from_millis(100);
                    IDLE_TICK
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?backoff, "outbox relay will retry");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {
                    // A write just failed to apply: Redis is likely still
                    // down, so keep the backoff rather than spin.
                    tokio::time::sleep(backoff.min(wait)).await;
                }
                // The breaker just closed: Redis is back, retry at once.
                _ = self.cache.recovered() => {}
                _ = shutdown.clone().wait() => return,
            }
        }
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
