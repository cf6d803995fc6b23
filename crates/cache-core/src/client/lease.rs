//! The Redis side of a read: probe a key and take its lease when it is
//! empty, fill it only while the lease is still ours, give the lease back.

use std::time::{Duration, Instant};

use rand::Rng;

use super::{
    Cache,
    scripts::{FILL_IF_LEASED, READ_OR_LEASE, RELEASE_LEASE, SCRIPT_LOADS, invoke, is_noscript},
};
use crate::{
    error::{CacheError, unavailable},
    keys::KeyName,
};

/// Stored in place of a value for "does not exist". JSON never starts with a
/// NUL byte, so no value can be mistaken for it.
pub(super) const NOT_FOUND_MARKER: &str = "\0not-found";
/// Prefix of a lease placeholder: `\0lease:<random token>`.
pub(super) const LEASE_PREFIX: &str = "\0lease:";

/// What Redis said about a key on the read path.
pub(super) enum Probe {
    Value(String),
    NotFound,
    /// We now hold the lease: load and fill.
    Leased,
    /// Another filler holds the lease.
    Busy,
    /// Redis did not answer (or the breaker is open).
    Down,
}

pub(super) fn classify(result: Result<Option<String>, CacheError>) -> Probe {
    match result {
        Ok(None) => Probe::Leased,
        Ok(Some(raw)) if raw == NOT_FOUND_MARKER => Probe::NotFound,
        Ok(Some(raw)) if raw.starts_with(LEASE_PREFIX) => Probe::Busy,
        Ok(Some(raw)) => Probe::Value(raw),
        Err(_) => Probe::Down,
    }
}

impl Cache {
    pub(super) async fn read_or_lease(&self, name: KeyName, redis_key: &str, token: &str) -> Probe {
        let started = Instant::now();
        let result = self.read_or_lease_one(name, redis_key, token).await;
        self.observe_read(name, started);
        if !self.is_current(redis_key) {
            // The key generation moved while we read: a new primary may have
            // answered for a key of the old one.
            return Probe::Down;
        }
        classify(result)
    }

    async fn read_or_lease_one(
        &self,
        name: KeyName,
        redis_key: &str,
        token: &str,
    ) -> Result<Option<String>, CacheError> {
        let lease_ms = millis(self.inner.config.lease_ttl);
        self.call(name.as_str(), async |conn| {
            invoke(READ_OR_LEASE.key(redis_key).arg(token).arg(lease_ms), conn).await
        })
        .await
    }

    /// [`Cache::read_or_lease`] for many keys: one pipeline on a single
    /// server, one script per key on a cluster (a pipeline may not span
    /// slots).
    pub(super) async fn read_or_lease_many(
        &self,
        name: KeyName,
        redis_keys: &[String],
        token: &str,
    ) -> Vec<Probe> {
        let started = Instant::now();
        let result = if self.inner.backend.is_cluster() {
            let mut out = Vec::with_capacity(redis_keys.len());
            let mut failed = None;
            for key in redis_keys {
                match self.read_or_lease_one(name, key, token).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            failed.map_or(Ok(out), Err)
        } else {
            self.read_or_lease_pipeline(name, redis_keys, token).await
        };
        self.observe_read(name, started);
        let moved = redis_keys.first().is_some_and(|k| !self.is_current(k));
        match result {
            Ok(_) if moved => redis_keys.iter().map(|_| Probe::Down).collect(),
            Ok(values) => values.into_iter().map(|v| classify(Ok(v))).collect(),
            Err(_) => redis_keys.iter().map(|_| Probe::Down).collect(),
        }
    }

    async fn read_or_lease_pipeline(
        &self,
        name: KeyName,
        redis_keys: &[String],
        token: &str,
    ) -> Result<Vec<Option<String>>, CacheError> {
        let lease_ms = millis(self.inner.config.lease_ttl);
        let mut pipe = redis::pipe();
        for key in redis_keys {
            pipe.invoke_script(READ_OR_LEASE.key(key).arg(token).arg(lease_ms));
        }
        self.call(name.as_str(), async |conn| {
            // A pipeline does not load scripts by itself: load and retry,
            // as often as `invoke` would.
            let mut loads = 0;
            loop {
                match pipe.query_async::<Vec<Option<String>>>(&mut *conn).await {
                    Err(e) if is_noscript(&e) && loads < SCRIPT_LOADS => {
                        loads += 1;
                        READ_OR_LEASE
                            .prepare_invoke()
                            .load_async(&mut *conn)
                            .await
                            .map_err(unavailable)?;
                    }
                    other => return other.map_err(unavailable),
                }
            }
        })
        .await
    }

    fn observe_read(&self, name: KeyName, started: Instant) {
        self.inner
            .metrics
            .redis_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Stores `raw` if the key still holds our lease. False when it did not
    /// land: invalidated or expired meanwhile, or Redis did not answer.
    pub(super) async fn fill_if_leased(
        &self,
        name: KeyName,
        redis_key: &str,
        token: &str,
        raw: &str,
        ttl: Duration,
    ) -> bool {
        let stored = self
            .call(name.as_str(), async |conn| {
                invoke::<i64>(
                    FILL_IF_LEASED
                        .key(redis_key)
                        .arg(token)
                        .arg(raw)
                        .arg(millis(ttl)),
                    conn,
                )
                .await
            })
            .await;
        if let Ok(0) = stored {
            // Invalidated (or lease expired) while we loaded: what we read
            // may predate the write, so it must not be cached.
            self.inner
                .metrics
                .fills_rejected
                .with_label_values(&[name.as_str()])
                .inc();
        }
        matches!(stored, Ok(1))
    }

    pub(super) async fn release_lease(&self, redis_key: &str, token: &str) {
        let _ = self
            .call("lease", async |conn| {
                invoke::<i64>(RELEASE_LEASE.key(redis_key).arg(token), conn).await
            })
            .await;
    }
}

pub(super) fn lease_token() -> String {
    format!("{LEASE_PREFIX}{:032x}", rand::rng().random::<u128>())
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// TTL ±10 %, so keys filled together do not all expire together.
pub(super) fn jittered(ttl: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    ttl.mul_f64(factor).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let ttl = Duration::from_secs(600);
        for _ in 0..1000 {
            let j = jittered(ttl);
            assert!(
                j >= Duration::from_secs(540) && j <= Duration::from_secs(660),
                "{j:?}"
            );
        }
    }

    #[test]
    fn leases_markers_and_values_are_told_apart() {
        assert!(matches!(classify(Ok(None)), Probe::Leased));
        assert!(matches!(classify(Ok(Some(lease_token()))), Probe::Busy));
        assert!(matches!(
            classify(Ok(Some(NOT_FOUND_MARKER.into()))),
            Probe::NotFound
        ));
        assert!(matches!(classify(Ok(Some("{}".into()))), Probe::Value(_)));
        assert!(matches!(
            classify(Err(CacheError::BreakerOpen)),
            Probe::Down
        ));
    }
}
