//! The read path: in-process single flight (one leader per key, the others
//! wait on it) and one process's lookup (hit, or lease + load + fill, or a
//! bounded wait for another process's fill).

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use super::{
    Cache, Tagger,
    lease::{NOT_FOUND_MARKER, Probe, jittered, lease_token},
};
use crate::keys::{CacheKey, KeyName, NOT_FOUND_TTL, Tag};

/// What a single flight hands to the callers that waited on it. `seq` is
/// the flight's sequence number of the step that vouches for the result:
/// the Redis read that found it, the fill that landed it, or the start of
/// the load that read it (see [`Flight`]).
#[derive(Clone)]
pub(super) enum Fill {
    Value(Arc<str>, u64),
    NotFound(u64),
    /// The leader could not share its result; waiters load for themselves.
    Unshared,
}

/// One key's in-process single flight. The leader bumps `seq` right before
/// each step that can vouch for a result (a Redis read, a fill, the start
/// of a load); a waiter notes `seq` when it joins and takes the result only
/// if the step that vouches for it came later. So a waiter never gets a
/// value read — from Redis or the database — before it arrived, when a
/// write may have been acknowledged in between; a result whose source was
/// read after it arrived is as current as its own read would be. That holds
/// when Redis is down too, so concurrent misses then still share one load.
pub(super) struct Flight {
    tx: broadcast::Sender<Fill>,
    seq: Arc<AtomicU64>,
}

/// The caller's part in a key's flight.
enum Role {
    Leader(Arc<AtomicU64>),
    Waiter(broadcast::Receiver<Fill>, u64),
}

/// How long a loaded value stays cached: one TTL per key name, or one
/// chosen from the loaded value itself (a recording: 30 s while PROCESSING,
/// 600 s once settled — SPEC §4). Either way ±10 % jitter is added, and a
/// not-found result is cached for [`NOT_FOUND_TTL`].
pub enum Ttl<T> {
    Fixed(Duration),
    /// `of` picks the TTL of a loaded value; `longest` bounds what it can
    /// pick (tags registered before the load must outlive the value).
    ByValue {
        longest: Duration,
        of: fn(&T) -> Duration,
    },
}

impl<T> From<Duration> for Ttl<T> {
    fn from(ttl: Duration) -> Self {
        Self::Fixed(ttl)
    }
}

impl<T> Ttl<T> {
    fn longest(&self) -> Duration {
        match self {
            Self::Fixed(ttl) => *ttl,
            Self::ByValue { longest, .. } => *longest,
        }
    }

    fn of(&self, value: &T) -> Duration {
        match self {
            Self::Fixed(ttl) => *ttl,
            Self::ByValue { longest, of } => of(value).min(*longest),
        }
    }
}

/// How many flights a caller waits on, whose results came too early for
/// it, before it loads on its own.
const MAX_JOINS: usize = 3;

/// How probing Redis for a key ended.
enum Probed<T> {
    /// With the flight sequence number of the read that found it.
    Hit(T, Arc<str>, u64),
    NotFound(u64),
    /// Load from the database; `leased` when we hold the key's lease and
    /// may fill it.
    Load {
        leased: bool,
    },
}

impl Cache {
    /// Read-through: the cached value of `key`, or the loader's result, which
    /// is then cached for `ttl` (±10 %), or for [`NOT_FOUND_TTL`] as a
    /// not-found marker when the loader returns `None`. `ttl` is a
    /// `Duration`, or a [`Ttl::ByValue`] chosen from the loaded value. `tags`
    /// name the entities the value embeds; they are registered before the
    /// loader runs.
    ///
    /// Loader errors are returned as they are and never cached.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: impl Into<Ttl<T>>,
        tags: &[Tag],
        loader: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let tags = tags.to_vec();
        self.get_or_load_tagged(key, ttl, async move |tagger: Tagger| {
            tagger.tag(&tags).await;
            loader().await
        })
        .await
    }

    /// Like [`Cache::get_or_load`], for values whose tags are only known
    /// while loading: the loader gets a [`Tagger`].
    pub async fn get_or_load_tagged<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: impl Into<Ttl<T>>,
        loader: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Tagger) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let ttl = ttl.into();
        let redis_key = self.redis_key(key.path());
        let name = key.name();
        if !self.inner.config.reads {
            // Cache off: no in-process sharing either (callers that join a
            // flight before its load starts would share it), so every read
            // loads.
            let (value, _) = self
                .lookup(name, &redis_key, ttl, &AtomicU64::default(), loader)
                .await?;
            return Ok(value);
        }
        let mut joins = 0;
        let seq = loop {
            let (mut rx, joined) = match self.join(&redis_key) {
                Role::Leader(seq) => break Some(seq),
                Role::Waiter(rx, joined) => (rx, joined),
            };
            if joins == 0 {
                self.inner.metrics.lookup(name, "coalesced");
            }
            joins += 1;
            match rx.recv().await {
                Ok(Fill::NotFound(seq)) if seq > joined => return Ok(None),
                Ok(Fill::Value(json, seq)) if seq > joined => {
                    if let Ok(value) = serde_json::from_str(&json) {
                        return Ok(Some(value));
                    }
                }
                // Failed, cancelled, or vouched for before we arrived.
                _ => {}
            }
            if joins == MAX_JOINS {
                break None;
            }
        };
        let Some(seq) = seq else {
            let (value, _) = self
                .lookup(name, &redis_key, ttl, &AtomicU64::default(), loader)
                .await?;
            return Ok(value);
        };
        let flight = FlightGuard {
            cache: self,
            redis_key: &redis_key,
        };
        let (value, fill) = self.lookup(name, &redis_key, ttl, &seq, loader).await?;
        flight.land(fill);
        Ok(value)
    }

    /// Joins the key's flight, or starts one.
    fn join(&self, redis_key: &str) -> Role {
        let mut flights = self.lock_flights();
        if let Some(flight) = flights.get(redis_key) {
            let rx = flight.tx.subscribe();
            return Role::Waiter(rx, flight.seq.load(Ordering::SeqCst));
        }
        let seq = Arc::new(AtomicU64::new(0));
        flights.insert(
            redis_key.to_owned(),
            Flight {
                tx: broadcast::channel(1).0,
                seq: seq.clone(),
            },
        );
        Role::Leader(seq)
    }

    /// One process's read of a key: a hit, or a lease and a load, or (when
    /// another process holds the lease) a bounded wait for its fill.
    async fn lookup<T, E, F, Fut>(
        &self,
        name: KeyName,
        redis_key: &str,
        ttl: Ttl<T>,
        seq: &AtomicU64,
        loader: F,
    ) -> Result<(Option<T>, Fill), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Tagger) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let token = lease_token();
        if self.reads_held() {
            // Pending invalidations: Redis may hold what they delete.
            self.inner.metrics.lookup(name, "held");
            return self
                .load_and_fill(name, (redis_key, &token), false, ttl, seq, loader)
                .await;
        }
        let leased = match self.probe(name, redis_key, &token, seq).await {
            Probed::Hit(value, json, at) => return Ok((Some(value), Fill::Value(json, at))),
            Probed::NotFound(at) => return Ok((None, Fill::NotFound(at))),
            Probed::Load { leased } => leased,
        };
        self.inner.metrics.lookup(name, "miss");
        self.load_and_fill(name, (redis_key, &token), leased, ttl, seq, loader)
            .await
    }

    /// Reads the key until it settles: a value, a not-found marker, our
    /// lease, or a reason to load without one (Redis down, another filler
    /// too slow, an undecodable value).
    async fn probe<T: DeserializeOwned>(
        &self,
        name: KeyName,
        redis_key: &str,
        token: &str,
        seq: &AtomicU64,
    ) -> Probed<T> {
        let metrics = &self.inner.metrics;
        let deadline = Instant::now() + self.inner.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        loop {
            let at = seq.fetch_add(1, Ordering::SeqCst) + 1;
            let probe = self.read_or_lease(name, redis_key, token).await;
            #[cfg(test)]
            self.failpoint("lookup:probed").await;
            match probe {
                Probe::NotFound => {
                    metrics.lookup(name, "not_found_hit");
                    return Probed::NotFound(at);
                }
                Probe::Value(json) => match serde_json::from_str(&json) {
                    Ok(value) => {
                        metrics.lookup(name, if waited { "lease_wait_hit" } else { "hit" });
                        return Probed::Hit(value, json.into(), at);
                    }
                    // Another shape (a deploy forgot to bump the prefix
                    // version): load, and let the TTL replace it.
                    Err(e) => {
                        tracing::warn!(key = %redis_key, error = %e, "undecodable cached value");
                        return Probed::Load { leased: false };
                    }
                },
                Probe::Leased => return Probed::Load { leased: true },
                Probe::Down => return Probed::Load { leased: false },
                Probe::Busy => {
                    if !waited {
                        metrics
                            .lease_waits
                            .with_label_values(&[name.as_str()])
                            .inc();
                        waited = true;
                    }
                    if Instant::now() >= deadline {
                        // The filler is slow or gone: answer from the
                        // database rather than keep the caller waiting.
                        return Probed::Load { leased: false };
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Runs the loader and, when we hold the lease, fills the key with its
    /// result (lease-checked). Returns the result and what waiters get.
    async fn load_and_fill<T, E, F, Fut>(
        &self,
        name: KeyName,
        (redis_key, token): (&str, &str),
        leased: bool,
        ttl: Ttl<T>,
        seq: &AtomicU64,
        loader: F,
    ) -> Result<(Option<T>, Fill), E>
    where
        T: Serialize,
        F: FnOnce(Tagger) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let tagger = Tagger::new(
            self.clone(),
            redis_key,
            ttl.longest().mul_f64(1.1) + self.inner.config.lease_ttl + Duration::from_secs(1),
            leased,
        );
        let load_started = seq.fetch_add(1, Ordering::SeqCst) + 1;
        let loaded = match self.timed_load(name, loader(tagger.clone())).await {
            Ok(loaded) => loaded,
            Err(e) => {
                if leased {
                    self.release_lease(redis_key, token).await;
                }
                return Err(e);
            }
        };
        let Some((raw, fill_ttl, json)) = encode(redis_key, &loaded, &ttl) else {
            if leased {
                self.release_lease(redis_key, token).await;
            }
            return Ok((loaded, Fill::Unshared));
        };
        let fill_sent = seq.fetch_add(1, Ordering::SeqCst) + 1;
        let landed = if !leased {
            false
        } else if tagger.failed.load(Ordering::SeqCst) {
            self.release_lease(redis_key, token).await;
            false
        } else {
            self.fill_if_leased(name, redis_key, token, &raw, fill_ttl)
                .await
        };
        // A fill that landed vouches for the value as of the fill: no
        // invalidation came between our lease and it. Otherwise (rejected,
        // or Redis unreachable) only the load's start vouches for it.
        let at = if landed { fill_sent } else { load_started };
        let fill = match json {
            Some(json) => Fill::Value(json, at),
            None => Fill::NotFound(at),
        };
        Ok((loaded, fill))
    }

    pub(super) async fn timed_load<T, E>(
        &self,
        name: KeyName,
        load: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let metrics = &self.inner.metrics;
        metrics.loads.with_label_values(&[name.as_str()]).inc();
        let started = Instant::now();
        let loaded = load.await;
        metrics
            .load_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        if loaded.is_err() {
            metrics
                .load_errors
                .with_label_values(&[name.as_str()])
                .inc();
        }
        loaded
    }

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The stored text of a loaded result, its TTL, and its JSON for waiters
/// (`None` for not-found); `None` when the value cannot be serialized (then
/// nothing is cached or shared).
fn encode<T: Serialize>(
    redis_key: &str,
    loaded: &Option<T>,
    ttl: &Ttl<T>,
) -> Option<(String, Duration, Option<Arc<str>>)> {
    match loaded {
        None => Some((NOT_FOUND_MARKER.to_owned(), NOT_FOUND_TTL, None)),
        Some(value) => match serde_json::to_string(value) {
            Ok(json) => {
                let shared = Some(json.as_str().into());
                Some((json, jittered(ttl.of(value)), shared))
            }
            Err(e) => {
                tracing::error!(key = %redis_key, error = %e, "value cannot be serialized; not cached");
                None
            }
        },
    }
}

/// Ends a single flight: on landing, or on error, panic or cancellation of the
/// leader (drop), the key leaves the in-flight map, so later callers go to
/// Redis and waiting callers are released.
struct FlightGuard<'a> {
    cache: &'a Cache,
    redis_key: &'a str,
}

impl FlightGuard<'_> {
    fn land(self, fill: Fill) {
        let sender = self.cache.lock_flights().remove(self.redis_key);
        if let Some(flight) = sender {
            // No receivers is fine: nobody was waiting.
            let _ = flight.tx.send(fill);
        }
        std::mem::forget(self);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.lock_flights().remove(self.redis_key);
    }
}
