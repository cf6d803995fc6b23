//! Batch reads: one round of Redis reads for many keys of one name, one
//! loader call for all the misses, then lease-checked fills.

use std::{future::Future, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Cache,
    lease::{NOT_FOUND_MARKER, Probe, jittered, lease_token},
};
use crate::keys::{CacheKey, KeyName, NOT_FOUND_TTL};

/// The first pass of a batch: what Redis answered, and what is left to load.
struct Sorted<T> {
    values: Vec<Option<T>>,
    /// Indexes to load.
    missing: Vec<usize>,
    /// Indexes whose lease we hold (a subset of `missing`).
    leased: Vec<usize>,
}

impl Cache {
    /// Batch read-through for keys of one name (e.g. display data of many
    /// users): one round of reads, then one loader call for all the misses,
    /// then lease-checked fills. The loader gets the indexes (into `keys`) of
    /// the misses and returns their values in that order, `None` for "does
    /// not exist". Keys another process is filling are loaded, not awaited.
    pub async fn get_many_or_load<T, E, F, Fut>(
        &self,
        keys: &[CacheKey],
        ttl: Duration,
        loader: F,
    ) -> Result<Vec<Option<T>>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<Option<T>>, E>>,
    {
        let Some(name) = keys.first().map(CacheKey::name) else {
            return Ok(Vec::new());
        };
        if self.reads_held() {
            // Pending invalidations: Redis may hold what they delete.
            return self
                .timed_load(name, loader((0..keys.len()).collect()))
                .await;
        }
        let token = lease_token();
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k.path())).collect();
        let probes = self.read_or_lease_many(name, &redis_keys, &token).await;
        let Sorted {
            mut values,
            missing,
            leased,
        } = self.sort_probes(name, probes);
        if missing.is_empty() {
            return Ok(values);
        }

        let loaded = match self.timed_load(name, loader(missing.clone())).await {
            Ok(loaded) => loaded,
            Err(e) => {
                for i in &leased {
                    self.release_lease(&redis_keys[*i], &token).await;
                }
                return Err(e);
            }
        };
        for (i, value) in missing.into_iter().zip(loaded) {
            if leased.contains(&i) {
                self.fill_one(name, &redis_keys[i], &token, &value, ttl)
                    .await;
            }
            values[i] = value;
        }
        Ok(values)
    }

    fn sort_probes<T: DeserializeOwned>(&self, name: KeyName, probes: Vec<Probe>) -> Sorted<T> {
        let metrics = &self.inner.metrics;
        let mut sorted = Sorted {
            values: Vec::with_capacity(probes.len()),
            missing: Vec::new(),
            leased: Vec::new(),
        };
        for (i, probe) in probes.into_iter().enumerate() {
            let decoded = match probe {
                Probe::NotFound => {
                    metrics.lookup(name, "not_found_hit");
                    sorted.values.push(None);
                    continue;
                }
                Probe::Value(raw) => serde_json::from_str(&raw).ok(),
                Probe::Leased => {
                    sorted.leased.push(i);
                    None
                }
                Probe::Busy | Probe::Down => None,
            };
            match decoded {
                Some(v) => {
                    metrics.lookup(name, "hit");
                    sorted.values.push(Some(v));
                }
                None => {
                    metrics.lookup(name, "miss");
                    sorted.missing.push(i);
                    sorted.values.push(None);
                }
            }
        }
        sorted
    }

    async fn fill_one<T: Serialize>(
        &self,
        name: KeyName,
        redis_key: &str,
        token: &str,
        value: &Option<T>,
        ttl: Duration,
    ) {
        let raw = match value {
            None => Some((NOT_FOUND_MARKER.to_owned(), NOT_FOUND_TTL)),
            Some(v) => serde_json::to_string(v).ok().map(|j| (j, jittered(ttl))),
        };
        match raw {
            Some((raw, ttl)) => {
                self.fill_if_leased(name, redis_key, token, &raw, ttl).await;
            }
            None => self.release_lease(redis_key, token).await,
        }
    }
}
