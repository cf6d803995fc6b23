//! The read path: in-process single flight (one leader per key, the others
//! wait on it) and one process's lookup (hit, or lease + load + fill, or a
//! bounded wait for another process's fill).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use super::{
    Cache, Tagger,
    lease::{NOT_FOUND_MARKER, Probe, jittered, lease_token},
};
use crate::keys::{CacheKey, KeyName, NOT_FOUND_TTL, Tag};

/// What a single flight hands to the callers that waited on it.
#[derive(Clone)]
pub(super) enum Fill {
    Value(Arc<str>),
    NotFound,
    /// The leader could not share its result; waiters load for themselves.
    Unshared,
}

/// How probing Redis for a key ended.
enum Probed<T> {
    Hit(T, Arc<str>),
    NotFound,
    /// Load from the database; `leased` when we hold the key's lease and
    /// may fill it.
    Load {
        leased: bool,
    },
}

impl Cache {
    /// Read-through: the cached value of `key`, or the loader's result, which
    /// is then cached for `ttl` (±10 %), or for [`NOT_FOUND_TTL`] as a
    /// not-found marker when the loader returns `None`. `tags` name the
    /// entities the value embeds; they are registered before the loader runs.
    ///
    /// Loader errors are returned as they are and never cached.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Duration,
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
        ttl: Duration,
        loader: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Tagger) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let redis_key = self.redis_key(key.path());
        let waiting = {
            let mut flights = self.lock_flights();
            match flights.get(&redis_key) {
                Some(leader) => Some(leader.subscribe()),
                None => {
                    flights.insert(redis_key.clone(), broadcast::channel(1).0);
                    None
                }
            }
        };

        let Some(mut waiting) = waiting else {
            let flight = FlightGuard {
                cache: self,
                redis_key: &redis_key,
            };
            let (value, fill) = self.lookup(key.name(), &redis_key, ttl, loader).await?;
            flight.land(fill);
            return Ok(value);
        };

        self.inner.metrics.lookup(key.name(), "coalesced");
        match waiting.recv().await {
            Ok(Fill::NotFound) => return Ok(None),
            Ok(Fill::Value(json)) => {
                if let Ok(value) = serde_json::from_str(&json) {
                    return Ok(Some(value));
                }
            }
            // The leader failed or was cancelled: load without it.
            Ok(Fill::Unshared) | Err(_) => {}
        }
        let (value, _) = self.lookup(key.name(), &redis_key, ttl, loader).await?;
        Ok(value)
    }

    /// One process's read of a key: a hit, or a lease and a load, or (when
    /// another process holds the lease) a bounded wait for its fill.
    async fn lookup<T, E, F, Fut>(
        &self,
        name: KeyName,
        redis_key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<(Option<T>, Fill), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Tagger) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let token = lease_token();
        let leased = match self.probe(name, redis_key, &token).await {
            Probed::Hit(value, json) => return Ok((Some(value), Fill::Value(json))),
            Probed::NotFound => return Ok((None, Fill::NotFound)),
            Probed::Load { leased } => leased,
        };
        self.inner.metrics.lookup(name, "miss");
        self.load_and_fill(name, redis_key, &token, leased, ttl, loader)
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
    ) -> Probed<T> {
        let metrics = &self.inner.metrics;
        let deadline = Instant::now() + self.inner.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        loop {
            match self.read_or_lease(name, redis_key, token).await {
                Probe::NotFound => {
                    metrics.lookup(name, "not_found_hit");
                    return Probed::NotFound;
                }
                Probe::Value(json) => match serde_json::from_str(&json) {
                    Ok(value) => {
                        metrics.lookup(name, if waited { "lease_wait_hit" } else { "hit" });
                        return Probed::Hit(value, json.into());
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
        redis_key: &str,
        token: &str,
        leased: bool,
        ttl: Duration,
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
            ttl.mul_f64(1.1) + self.inner.config.lease_ttl + Duration::from_secs(1),
            leased,
        );
        let loaded = match self.timed_load(name, loader(tagger.clone())).await {
            Ok(loaded) => loaded,
            Err(e) => {
                if leased {
                    self.release_lease(redis_key, token).await;
                }
                return Err(e);
            }
        };
        let Some((raw, fill_ttl, fill)) = encode(redis_key, &loaded, ttl) else {
            if leased {
                self.release_lease(redis_key, token).await;
            }
            return Ok((loaded, Fill::Unshared));
        };
        let landed = if !leased {
            false
        } else if tagger.failed.load(Ordering::SeqCst) {
            self.release_lease(redis_key, token).await;
            false
        } else {
            self.fill_if_leased(name, redis_key, token, &raw, fill_ttl)
                .await
        };
        // In-process waiters get only a result known to be current: one
        // whose lease-checked fill landed. A value an invalidation rejected,
        // or one read while Redis was unreachable, may predate a write that
        // was acknowledged before a waiter arrived; waiters load themselves.
        Ok((loaded, if landed { fill } else { Fill::Unshared }))
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

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Fill>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The stored text of a loaded result, its TTL, and what waiters get; `None`
/// when the value cannot be serialized (then nothing is cached).
fn encode<T: Serialize>(
    redis_key: &str,
    loaded: &Option<T>,
    ttl: Duration,
) -> Option<(String, Duration, Fill)> {
    match loaded {
        None => Some((NOT_FOUND_MARKER.to_owned(), NOT_FOUND_TTL, Fill::NotFound)),
        Some(value) => match serde_json::to_string(value) {
            Ok(json) => {
                let fill = Fill::Value(json.as_str().into());
                Some((json, jittered(ttl), fill))
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
        if let Some(sender) = sender {
            // No receivers is fine: nobody was waiting.
            let _ = sender.send(fill);
        }
        std::mem::forget(self);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.lock_flights().remove(self.redis_key);
    }
}
