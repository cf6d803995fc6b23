//! The cache-aside client every service reads and invalidates through.
//!
//! What it guarantees, so call sites never repeat it:
//! - values are JSON under `{prefix}{key}`, with the key's TTL ±10 %;
//!   "does not exist" is cached as a marker for [`NOT_FOUND_TTL`];
//! - **single flight**: concurrent misses of one key share one loader run —
//!   in a process through an in-memory flight table, across processes
//!   through a lease stored in the key itself;
//! - **no stale set**: a fill lands only if the key still holds the filler's
//!   lease (compare-and-set in Lua). An invalidation deletes the key, and
//!   with it any lease, so a value read before a write committed can never be
//!   written back after the write's invalidation;
//! - **tags**: a value embedding other entities is indexed under their tags
//!   *before* its data is read, so an invalidation of the tag finds it;
//! - **fail-open**: every Redis call is bounded by `op_timeout`; a circuit
//!   breaker stops calling a failing Redis and probes it to recover. Redis
//!   failing never fails a read; the loader answers instead;
//! - **cluster-safe**: every command touches one key, or keys of one slot.
//!
//! Code map: `flight` (the read path: in-process single flight and one
//! process's lookup), `lease` (the Redis side of a read: lease, fill,
//! release), `batch` (batch reads), `tagger`, `invalidate`, `prune` (tag
//! sets stay bounded), `admin`
//! (operator commands), `scripts` (the Lua scripts).
//!
//! [`NOT_FOUND_TTL`]: crate::NOT_FOUND_TTL

mod admin;
mod batch;
#[cfg(test)]
mod failpoint;
mod flight;
mod invalidate;
mod lease;
mod prune;
mod scripts;
mod tagger;
#[cfg(test)]
mod tests;
mod window;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use admin::{EvictionCheck, RedisHealth};
pub use flight::Ttl;
pub use tagger::Tagger;
pub use window::Appended;

use crate::{
    backend::{Backend, Conn},
    breaker::{Breaker, BreakerState},
    config::CacheConfig,
    epoch::Epoch,
    error::CacheError,
    metrics::CacheMetrics,
};

/// Keys per DEL / SREM / MGET command.
const CHUNK: usize = 256;
/// Admin commands (SCAN, INFO, flush) may be slow; they are not on a
/// request path, so they get their own, longer bound.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    /// The service this handle reads for (see [`Cache::scoped`]): its reads
    /// are held only by its own pending invalidations.
    scope: Option<&'static str>,
}

struct Inner {
    backend: Backend,
    /// The configured prefix; keys live under its current generation
    /// (`epoch`), which moves when the Redis primary changes.
    prefix: String,
    epoch: Arc<Epoch>,
    config: CacheConfig,
    metrics: CacheMetrics,
    breaker: Arc<Breaker>,
    /// Woken when the breaker closes: Redis is back, so whoever holds
    /// deferred work (the invalidation outbox) should retry now.
    recovered: tokio::sync::Notify,
    /// Sources (outboxes) that know of invalidations not yet applied: while
    /// any does, reads skip Redis, which may still hold what they delete.
    held: Mutex<std::collections::BTreeSet<&'static str>>,
    /// `!held.is_empty()`, readable on the hot path without the lock.
    any_held: std::sync::atomic::AtomicBool,
    flights: Mutex<HashMap<String, flight::Flight>>,
    #[cfg(test)]
    failpoints: failpoint::Failpoints,
}

impl Cache {
    pub fn new(config: &CacheConfig, metrics: CacheMetrics) -> Result<Self, CacheError> {
        config.validate()?;
        let epoch = Arc::new(Epoch::new(&config.prefix));
        let backend = Backend::new(config, &epoch)?;
        let breaker = Arc::new(Breaker::new(
            config.breaker_threshold,
            config.breaker_cooldown,
        ));
        metrics.show_breaker(&breaker);
        Ok(Self {
            scope: None,
            inner: Arc::new(Inner {
                backend,
                prefix: config.prefix.clone(),
                epoch,
                breaker,
                config: config.clone(),
                metrics,
                recovered: tokio::sync::Notify::new(),
                held: Mutex::default(),
                any_held: std::sync::atomic::AtomicBool::new(false),
                flights: Mutex::default(),
                #[cfg(test)]
                failpoints: failpoint::Failpoints::default(),
            }),
        })
    }

    /// The configured prefix. Keys carry it, followed by a generation
    /// segment once the Redis primary has changed ([`Cache::key_prefix`]).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The prefix keys are read and written under now.
    pub fn key_prefix(&self) -> String {
        self.inner.epoch.prefix()
    }

    /// The Redis connection pool's state, read by the pool gauges
    /// (`huddle_redis_pool_*`, huddle_db::pool_metrics).
    pub fn pool_status(&self) -> deadpool_redis::Status {
        self.inner.backend.pool_status()
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Resolves the next time the breaker closes after being open.
    pub async fn recovered(&self) {
        self.inner.recovered.notified().await;
    }

    /// `source` knows of invalidations it has not applied (a refused apply,
    /// another replica's NOTIFY, rows a crash may have left): until it
    /// [`releases`](Self::release_reads), reads answer from the loader
    /// without reading or filling Redis, so a value those invalidations
    /// would delete is never served — not even in the moment between Redis
    /// coming back and the relay applying them.
    pub fn hold_reads(&self, source: &'static str) {
        self.update_held(|held| {
            held.insert(source);
        });
    }

    /// `source` has applied everything it knew of.
    pub fn release_reads(&self, source: &'static str) {
        self.update_held(|held| {
            held.remove(source);
        });
    }

    /// The same cache, for one service's reads: held by that service's own
    /// pending invalidations only (services in one process share a Redis
    /// pool, but never invalidate each other's keys).
    pub fn scoped(&self, service: &'static str) -> Self {
        Self {
            inner: self.inner.clone(),
            scope: Some(service),
        }
    }

    /// Whether this handle's reads skip Redis (held by a pending
    /// invalidation, or cache reads turned off): such a service cannot
    /// answer any read without Postgres, which its readiness needs to know.
    pub fn reads_held(&self) -> bool {
        if !self.inner.config.reads {
            return true;
        }
        if !self
            .inner
            .any_held
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let Some(scope) = self.scope else {
            return true;
        };
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(scope)
    }

    fn update_held(&self, change: impl FnOnce(&mut std::collections::BTreeSet<&'static str>)) {
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut held);
        self.inner
            .any_held
            .store(!held.is_empty(), std::sync::atomic::Ordering::Release);
    }

    /// The Redis key for a key path: prefix (with its generation) + path.
    pub fn redis_key(&self, path: &str) -> String {
        format!("{}{path}", self.inner.epoch.prefix())
    }

    /// Whether `redis_key` is of the current generation: a read that began
    /// under an older one may have reached the new primary with a suspect
    /// key, and must not be served.
    pub(super) fn is_current(&self, redis_key: &str) -> bool {
        redis_key.starts_with(&self.inner.epoch.prefix())
    }

    pub fn close(&self) {
        self.inner.backend.close();
    }

    /// Every request-path Redis call goes through here: the breaker decides
    /// whether to try at all, the timeout bounds the wait (connection
    /// checkout included), and the outcome feeds the breaker and metrics.
    ///
    /// Not an `async fn`: one more generator level around every call made
    /// the read path's future too deep for the compiler's layout queries.
    fn call<'a, T: 'a>(
        &'a self,
        label: &'a str,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, CacheError> + 'a,
    ) -> impl std::future::Future<Output = Result<T, CacheError>> + 'a {
        self.call_within(label, self.inner.config.op_timeout, op)
    }

    /// [`Cache::call`] with its own bound (a call that includes a `WAIT`).
    async fn call_within<T>(
        &self,
        label: &str,
        timeout: Duration,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let inner = &self.inner;
        if !inner.breaker.allow() {
            inner.metrics.breaker_rejections.inc();
            return Err(CacheError::BreakerOpen);
        }
        let mut checked_out = false;
        let result = tokio::time::timeout(timeout, async {
            let mut conn = inner.backend.get().await?;
            checked_out = true;
            if let Err(e) = self.recheck(&mut conn).await {
                conn.discard();
                return Err(e);
            }
            let result = op(&mut conn).await;
            if matches!(&result, Err(CacheError::Unavailable(m)) if m.contains("READONLY")) {
                // A demoted primary (Sentinel switched, the endpoint kept
                // its connections): this one must not serve again.
                conn.discard();
            }
            result
        })
        .await
        .unwrap_or(Err(CacheError::Timeout(timeout)));
        let result = match result {
            // Waiting for a connection while every one is busy: this process
            // is saturated, Redis is not failing. Counting it would open the
            // breaker at peak load and send every read to the database.
            Err(CacheError::Timeout(_)) if !checked_out && inner.backend.exhausted() => {
                Err(CacheError::PoolExhausted)
            }
            other => other,
        };
        let transition = match &result {
            Ok(_) => inner.breaker.success(),
            Err(CacheError::PoolExhausted) => {
                inner
                    .metrics
                    .redis_errors
                    .with_label_values(&["pool"])
                    .inc();
                None
            }
            Err(e) => {
                inner.metrics.redis_errors.with_label_values(&[label]).inc();
                tracing::debug!(op = label, error = %e, "redis call failed; continuing without cache");
                inner.breaker.failure()
            }
        };
        if let Some(state) = transition {
            self.breaker_changed(state);
        }
        result
    }

    /// At most once a second, a call first re-reads its server's identity:
    /// a long-lived connection to a primary that was demoted still answers
    /// reads (with the new primary's data) and would never notice.
    async fn recheck(&self, conn: &mut Conn) -> Result<(), CacheError> {
        let epoch = &self.inner.epoch;
        let backend = &self.inner.backend;
        let fresh = epoch.fresh_replicas().is_some() && !backend.sentinel_unknown();
        if backend.is_cluster() || fresh {
            return Ok(());
        }
        if backend.sentinel_switched().await {
            return Err(CacheError::Unavailable(
                "the redis primary moved; reconnecting".into(),
            ));
        }
        epoch
            .observe(conn)
            .await
            .map(drop)
            .map_err(crate::error::unavailable)
    }

    fn breaker_changed(&self, state: BreakerState) {
        let inner = &self.inner;
        match state {
            BreakerState::Open => tracing::warn!(
                cooldown = ?inner.config.breaker_cooldown,
                "redis failing; circuit breaker open, serving from the database"
            ),
            _ => {
                tracing::info!("redis answering again; circuit breaker closed");
                inner.recovered.notify_waiters();
            }
        }
    }

    /// Admin calls bypass the breaker and get the longer [`ADMIN_TIMEOUT`].
    async fn admin<T>(
        &self,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        tokio::time::timeout(ADMIN_TIMEOUT, async {
            let mut conn = self.inner.backend.get().await?;
            op(&mut conn).await
        })
        .await
        .unwrap_or(Err(CacheError::Timeout(ADMIN_TIMEOUT)))
    }
}
