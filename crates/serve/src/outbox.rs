//! The invalidation outbox: a write records the cache invalidation it causes
//! in the same transaction as its data change, so the invalidation cannot be
//! lost. After commit the write applies it at once; if Redis refuses (down,
//! paused, breaker open) or the process dies first, the relay applies it
//! later — when woken, when Redis recovers, on its idle tick, or at the next
//! start.
//!
//! Applying twice is harmless (DEL is idempotent), so replicas may race on
//! the same rows without locking.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{Cache, CacheError, Invalidation};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::{Database, DbError};
use tokio::sync::Notify;

use crate::{
    listener::{self, HEARTBEAT, Heard, ListenError},
    relay::{self, Pass, Relay, Wake},
};

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
    pub crash_after_commit: AtomicBool,
    /// Milliseconds to wait after commit before applying the invalidation,
    /// so a test can cancel the request in between.
    pub delay_apply_ms: AtomicU64,
}

/// Postgres channel on which a replica that could not apply an
/// invalidation wakes every replica's relay (one per service database).
const CHANNEL: &str = "huddle_cache_outbox";

/// How long a request keeps retrying its own invalidation before it
/// answers and leaves the row to the relays.
const APPLY_BUDGET: Duration = Duration::from_millis(300);
const APPLY_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A test stopped a write right after its commit, as a dying process would
/// (`Failpoints::crash_after_commit`).
#[derive(Debug, thiserror::Error)]
#[error("failpoint: crash after commit")]
pub struct CrashedAfterCommit;

/// An invalidation recorded in a transaction that has committed.
#[must_use = "apply it after the commit, or the relay applies it only on its next tick"]
pub struct Recorded {
    id: i64,
    invalidation: Invalidation,
}

impl Recorded {
    /// Its `cache_outbox` row: gone once applied.
    pub fn id(&self) -> i64 {
        self.id
    }
}

/// How a write's apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Applied (or there was nothing to apply).
    Applied,
    /// Refused: the row stays for the relays, this replica holds its reads
    /// and every other replica was told to (NOTIFY sent).
    Held,
    /// Refused, and the other replicas could not be told: only this
    /// replica holds, until a relay applies the row.
    Deferred,
}

/// Why this replica's reads are held (`Cache::hold_reads` for the
/// service), beside the start's hold.
struct Hold {
    /// Bumped whenever a pending row becomes known (a refused apply,
    /// another replica's NOTIFY, a stream that saw one): a drain pass
    /// releases only if none became known since it started.
    known: AtomicU64,
    /// Some row known pending has not been drained since.
    pending: AtomicBool,
    /// The LISTEN connection is lost while Postgres answers: others'
    /// NOTIFYs go unheard, so reads stay held until the listener is back
    /// and a drain pass ran after that.
    deaf: AtomicBool,
}

impl Hold {
    /// At start, rows a crash left may be pending.
    fn at_start() -> Self {
        Self {
            known: AtomicU64::new(0),
            pending: AtomicBool::new(true),
            deaf: AtomicBool::new(false),
        }
    }

    fn known_pending(&self, cache: &Cache, service: &'static str) {
        self.known.fetch_add(1, Ordering::SeqCst);
        self.pending.store(true, Ordering::SeqCst);
        cache.hold_reads(service);
    }

    /// A drain pass that started at `known` applied every row it found.
    fn drained(&self, known: u64, cache: &Cache, service: &'static str) {
        if AtomicU64::load(&self.known, Ordering::SeqCst) != known {
            return;
        }
        self.pending.store(false, Ordering::SeqCst);
        if !AtomicBool::load(&self.deaf, Ordering::SeqCst) {
            cache.release_reads(service);
        }
    }
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    /// Where the LISTEN connection comes from (the same pool unless set).
    listen_db: Database,
    cache: Cache,
    service: &'static str,
    hold: Arc<Hold>,
    /// A request of this process could not apply its invalidation.
    wake: Arc<Notify>,
    /// Another replica could not (or this one, through Postgres).
    remote_wake: Arc<Notify>,
    failpoints: Arc<Failpoints>,
}

impl Outbox {
    pub fn new(db: Database, cache: Cache, service: &'static str) -> Self {
        // Rows a crash left behind may be pending: reads skip Redis until
        // the relay's first pass has applied them.
        cache.hold_reads(service);
        Self {
            listen_db: db.clone(),
            db,
            cache,
            service,
            hold: Arc::new(Hold::at_start()),
            wake: Arc::default(),
            remote_wake: Arc::default(),
            failpoints: Arc::default(),
        }
    }

    /// LISTENs through `db` rather than the outbox's own pool (a direct
    /// connection where the pool goes through a transaction pooler, which
    /// cannot LISTEN; tests put a proxy there).
    pub fn listening_through(mut self, db: Database) -> Self {
        self.listen_db = db;
        self
    }

    /// Someone (a chat stream that found a post held for) knows a row of
    /// this service is pending: hold this replica's reads until a relay
    /// pass has applied it.
    pub fn hold_for_pending(&self) {
        self.hold.known_pending(&self.cache, self.service);
        self.remote_wake.notify_one();
    }

    pub fn failpoints(&self) -> Arc<Failpoints> {
        self.failpoints.clone()
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

    /// What every write does once its transaction committed: apply the
    /// invalidation it recorded (if any). Commit first, then invalidate —
    /// never the reverse, or a reader could refill the old row between the
    /// two. Under the test failpoint it stops before applying.
    pub async fn after_commit(
        &self,
        recorded: impl Into<Option<Recorded>>,
    ) -> Result<Settled, CrashedAfterCommit> {
        if AtomicBool::load(&self.failpoints.crash_after_commit, Ordering::SeqCst) {
            return Err(CrashedAfterCommit);
        }
        Ok(match recorded.into() {
            Some(recorded) => self.apply(recorded).await,
            None => Settled::Applied,
        })
    }

    /// After commit: apply now, so the write's own response is never
    /// followed by a stale read.
    ///
    /// The work runs in a task of its own, so a request cancelled between
    /// its commit and this call's end (client gone, deadline) still applies
    /// its invalidation. A refused attempt is retried for a short budget;
    /// past it the row stays, and every replica's relay is woken (Postgres
    /// NOTIFY) so whichever reaches Redis first applies it.
    pub async fn apply(&self, recorded: Recorded) -> Settled {
        let this = self.clone();
        let task = tokio::spawn(async move { this.apply_detached(recorded).await });
        // A JoinError is a panic in the task: whether it applied is unknown.
        task.await.unwrap_or(Settled::Deferred)
    }

    async fn apply_detached(self, recorded: Recorded) -> Settled {
        let delay = AtomicU64::load(&self.failpoints.delay_apply_ms, Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let started = Instant::now();
        loop {
            match self.cache.invalidate(&recorded.invalidation).await {
                Ok(_) => {
                    self.cache.metrics().invalidation_applied(self.service);
                    if let Err(e) = self.delete(&[recorded.id]).await {
                        // Applied but not deleted: the relay applies it
                        // again, which is harmless.
                        tracing::warn!(error = %e, "outbox row applied but not deleted");
                    }
                    return Settled::Applied;
                }
                Err(e) if started.elapsed() + APPLY_RETRY_PAUSE > APPLY_BUDGET => {
                    tracing::warn!(write = ?recorded.invalidation.write, error = %e,
                        "invalidation deferred to the outbox relays");
                    self.hold.known_pending(&self.cache, self.service);
                    self.wake.notify_one();
                    return if self.notify_replicas().await {
                        Settled::Held
                    } else {
                        Settled::Deferred
                    };
                }
                Err(_) => tokio::time::sleep(APPLY_RETRY_PAUSE).await,
            }
        }
    }

    /// Whether the other replicas were told.
    async fn notify_replicas(&self) -> bool {
        let result = async {
            let mut conn = self.db.conn().await?;
            diesel::sql_query(format!("NOTIFY {CHANNEL}"))
                .execute(&mut conn)
                .await?;
            Ok::<_, DbError>(())
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "cannot wake the other replicas' relays");
        }
        result.is_ok()
    }

    /// Listens for other replicas' failed applies until `shutdown`, on a
    /// connection of its own, reconnecting after a failure or a silence
    /// (`listener`). While it is lost and Postgres answers, reads are held:
    /// a NOTIFY may go unheard meanwhile. While Postgres does not answer,
    /// no write can commit, so unless a row is known pending (held until
    /// applied, whatever Postgres does) cached reads are served.
    pub async fn listen(self, shutdown: huddle_common::Shutdown) {
        loop {
            let result = tokio::select! {
                r = self.listen_once() => r,
                _ = shutdown.clone().wait() => return,
            };
            // Asked whatever ended the pass: a connection that closed or
            // fell silent because Postgres went away (a failover) is no
            // reason to hold reads that no write can make stale.
            let postgres_answers = self.db_answers().await;
            if let Err(e) = result {
                tracing::warn!(service = self.service, error = %e, "outbox listener reconnecting");
            }
            self.hold.deaf.store(postgres_answers, Ordering::SeqCst);
            if postgres_answers {
                self.cache.hold_reads(self.service);
            } else if !AtomicBool::load(&self.hold.pending, Ordering::SeqCst) {
                self.cache.release_reads(self.service);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.clone().wait() => return,
            }
        }
    }

    async fn db_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.db.ping()).await,
            Ok(Ok(()))
        )
    }

    async fn listen_once(&self) -> Result<(), ListenError> {
        listener::listen_once(
            &self.listen_db,
            &[CHANNEL],
            HEARTBEAT,
            |heard| match heard {
                Heard::Listening => {
                    // NOTIFYs sent while nobody listened: the pass woken here
                    // finds their rows (and lifts a hold kept while deaf); one
                    // that read before now may have missed them, so it must
                    // not release.
                    self.hold.known.fetch_add(1, Ordering::SeqCst);
                    self.hold.deaf.store(false, Ordering::SeqCst);
                    self.remote_wake.notify_one();
                }
                Heard::Notification { .. } => {
                    // Another replica left a row: Redis may hold what it deletes.
                    self.hold.known_pending(&self.cache, self.service);
                    self.remote_wake.notify_one();
                }
            },
        )
        .await
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
        let known = AtomicU64::load(&self.hold.known, Ordering::SeqCst);
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
                // Everything this binary can apply is applied. (Rows of a
                // newer version are that version's replicas' to apply.)
                self.hold.drained(known, &self.cache, self.service);
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
            // A replica left a row: start retrying it (with backoff).
            _ = self.remote_wake.notified() => Wake::Now,
            // The breaker just closed: Redis is back, retry at once.
            _ = self.cache.recovered() => Wake::Now,
        }
    }
}
