//! The cache-aside client every service reads and invalidates through.
//!
//! Guarantees kept here, so call sites never repeat them:
//! - values are JSON, stored under `{prefix}{key}` with the key's TTL ±10 %;
//! - "not found" is cached as a marker for [`NOT_FOUND_TTL`];
//! - concurrent misses of one key in this process run the loader once
//!   (single flight); the others wait for its result;
//! - a value that embeds other entities is indexed under their tags, and an
//!   invalidation deletes tagged keys through that index, never by SCAN;
//! - Redis is never needed for an answer: every Redis call is bounded by a
//!   timeout, and any Redis failure degrades to "load from the database".

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use deadpool_redis::{Pool, Runtime};
use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use crate::{
    keys::{CacheKey, KeyName, NOT_FOUND_TTL, Tag},
    metrics::CacheMetrics,
    rules::Invalidation,
};

/// Stored in place of a value for "does not exist". JSON never starts with a
/// NUL byte, so no value can be mistaken for it.
const NOT_FOUND_MARKER: &str = "\0not-found";

/// Keys per DEL / SREM command, keeping any single command short.
const DELETE_CHUNK: usize = 256;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub redis_url: String,
    /// Prepended to every key; carries the format version (`huddle:v1:`).
    pub prefix: String,
    pub pool_size: usize,
    /// Upper bound on any one Redis call, connection checkout included.
    pub op_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "huddle:v1:".to_owned(),
            pool_size: 16,
            op_timeout: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache configuration: {0}")]
    Config(String),
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
}

/// What a single flight hands to the callers that waited on it.
#[derive(Clone)]
enum Fill {
    Value(Arc<str>),
    NotFound,
    /// The leader could not share its result; waiters load for themselves.
    Unshared,
}

enum Cached {
    Value(String),
    NotFound,
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    prefix: String,
    op_timeout: Duration,
    metrics: CacheMetrics,
    flights: Mutex<HashMap<String, broadcast::Sender<Fill>>>,
}

/// Result of a `ping`, for `huddle cache ping` and readiness reporting.
#[derive(Debug, Clone)]
pub struct RedisHealth {
    pub round_trip: Duration,
}

impl Cache {
    pub fn new(config: &CacheConfig, metrics: CacheMetrics) -> Result<Self, CacheError> {
        validate_prefix(&config.prefix)?;
        let mut pool_config = deadpool_redis::Config::from_url(config.redis_url.clone());
        let mut limits = deadpool_redis::PoolConfig::new(config.pool_size.max(1));
        limits.timeouts.wait = Some(config.op_timeout);
        limits.timeouts.create = Some(config.op_timeout);
        limits.timeouts.recycle = Some(config.op_timeout);
        pool_config.pool = Some(limits);
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| CacheError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                prefix: config.prefix.clone(),
                op_timeout: config.op_timeout,
                metrics,
                flights: Mutex::default(),
            }),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// The Redis key for a key path: prefix + path.
    pub fn redis_key(&self, path: &str) -> String {
        format!("{}{path}", self.inner.prefix)
    }

    /// Read-through: the cached value of `key`, or the loader's result, which
    /// is then cached for `ttl` (±10 %), or for [`NOT_FOUND_TTL`] as a
    /// not-found marker when the loader returns `None`. `tags` name the
    /// entities the value embeds, so their invalidation deletes it.
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
            let (value, fill) = self
                .read_or_load(key, &redis_key, ttl, tags, loader)
                .await?;
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
        let (value, _) = self
            .read_or_load(key, &redis_key, ttl, tags, loader)
            .await?;
        Ok(value)
    }

    async fn read_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        redis_key: &str,
        ttl: Duration,
        tags: &[Tag],
        loader: F,
    ) -> Result<(Option<T>, Fill), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let name = key.name();
        let metrics = &self.inner.metrics;
        match self.read(name, redis_key).await {
            Some(Cached::NotFound) => {
                metrics.lookup(name, "not_found_hit");
                return Ok((None, Fill::NotFound));
            }
            Some(Cached::Value(json)) => match serde_json::from_str(&json) {
                Ok(value) => {
                    metrics.lookup(name, "hit");
                    return Ok((Some(value), Fill::Value(json.into())));
                }
                // A value of another shape (a deploy forgot to bump the
                // prefix version): treat as a miss and overwrite it.
                Err(e) => tracing::warn!(key = %redis_key, error = %e, "undecodable cached value"),
            },
            None => {}
        }
        metrics.lookup(name, "miss");

        metrics.loads.with_label_values(&[name.as_str()]).inc();
        let started = Instant::now();
        let loaded = loader().await;
        metrics
            .load_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let loaded = loaded.inspect_err(|_| {
            metrics
                .load_errors
                .with_label_values(&[name.as_str()])
                .inc();
        })?;

        let fill = match &loaded {
            None => {
                self.fill(name, redis_key, NOT_FOUND_MARKER, NOT_FOUND_TTL, tags)
                    .await;
                Fill::NotFound
            }
            Some(value) => match serde_json::to_string(value) {
                Ok(json) => {
                    self.fill(name, redis_key, &json, jittered(ttl), tags).await;
                    Fill::Value(json.into())
                }
                Err(e) => {
                    tracing::error!(key = %redis_key, error = %e, "value cannot be serialized; not cached");
                    Fill::Unshared
                }
            },
        };
        Ok((loaded, fill))
    }

    async fn read(&self, name: KeyName, redis_key: &str) -> Option<Cached> {
        let started = Instant::now();
        let result = self
            .bounded(async {
                let mut conn = self.conn().await?;
                redis::cmd("GET")
                    .arg(redis_key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await;
        self.inner
            .metrics
            .redis_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Some(raw)) if raw == NOT_FOUND_MARKER => Some(Cached::NotFound),
            Ok(Some(raw)) => Some(Cached::Value(raw)),
            Ok(None) => None,
            Err(e) => {
                self.redis_failed(name.as_str(), &e);
                None
            }
        }
    }

    /// Stores a loaded value and registers it under its tags, atomically, so
    /// a value never exists in Redis without its index entries.
    async fn fill(&self, name: KeyName, redis_key: &str, raw: &str, ttl: Duration, tags: &[Tag]) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.add_fill(&mut pipe, redis_key, raw, ttl, tags);
        self.run_fills(name, pipe).await;
    }

    fn add_fill(
        &self,
        pipe: &mut redis::Pipeline,
        redis_key: &str,
        raw: &str,
        ttl: Duration,
        tags: &[Tag],
    ) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // The index must outlive every key it lists.
        let tag_secs = ttl.as_secs() + 1;
        pipe.cmd("SET")
            .arg(redis_key)
            .arg(raw)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        for tag in tags {
            let tag_key = self.redis_key(&tag.path());
            pipe.cmd("SADD").arg(&tag_key).arg(redis_key).ignore();
            pipe.cmd("EXPIRE")
                .arg(&tag_key)
                .arg(tag_secs)
                .arg("NX")
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(&tag_key)
                .arg(tag_secs)
                .arg("GT")
                .ignore();
        }
    }

    async fn run_fills(&self, name: KeyName, pipe: redis::Pipeline) {
        let result = self
            .bounded(async {
                let mut conn = self.conn().await?;
                pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
            })
            .await;
        if let Err(e) = result {
            self.redis_failed(name.as_str(), &e);
        }
    }

    /// Batch read-through for keys of one name (e.g. display data of many
    /// users): one MGET, then one loader call for all the misses, then one
    /// pipelined fill. The loader gets the indexes (into `keys`) of the misses
    /// and returns their values in that order, `None` for "does not exist".
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
        let metrics = &self.inner.metrics;
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k.path())).collect();
        let started = Instant::now();
        let cached = self
            .bounded(async {
                let mut conn = self.conn().await?;
                redis::cmd("MGET")
                    .arg(&redis_keys)
                    .query_async::<Vec<Option<String>>>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await
            .unwrap_or_else(|e| {
                self.redis_failed(name.as_str(), &e);
                vec![None; keys.len()]
            });
        metrics
            .redis_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());

        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, raw) in cached.into_iter().enumerate() {
            match raw {
                Some(raw) if raw == NOT_FOUND_MARKER => {
                    metrics.lookup(keys[i].name(), "not_found_hit");
                    values.push(None);
                }
                Some(raw) => match serde_json::from_str(&raw) {
                    Ok(v) => {
                        metrics.lookup(keys[i].name(), "hit");
                        values.push(Some(v));
                    }
                    Err(_) => {
                        metrics.lookup(keys[i].name(), "miss");
                        missing.push(i);
                        values.push(None);
                    }
                },
                None => {
                    metrics.lookup(keys[i].name(), "miss");
                    missing.push(i);
                    values.push(None);
                }
            }
        }
        if missing.is_empty() {
            return Ok(values);
        }

        metrics.loads.with_label_values(&[name.as_str()]).inc();
        let started = Instant::now();
        let loaded = loader(missing.clone()).await;
        metrics
            .load_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let loaded = loaded.inspect_err(|_| {
            metrics
                .load_errors
                .with_label_values(&[name.as_str()])
                .inc();
        })?;

        let mut pipe = redis::pipe();
        for (i, value) in missing.into_iter().zip(loaded) {
            match &value {
                None => self.add_fill(
                    &mut pipe,
                    &redis_keys[i],
                    NOT_FOUND_MARKER,
                    NOT_FOUND_TTL,
                    &[],
                ),
                Some(v) => {
                    if let Ok(json) = serde_json::to_string(v) {
                        self.add_fill(&mut pipe, &redis_keys[i], &json, jittered(ttl), &[]);
                    }
                }
            }
            values[i] = value;
        }
        self.run_fills(name, pipe).await;
        Ok(values)
    }

    /// Deletes every key a write made stale: the listed keys and every key
    /// indexed under the listed tags. Returns how many Redis keys existed and
    /// were deleted. An error means some keys may still be cached; the caller
    /// decides how to retry.
    pub async fn invalidate(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        let explicit: Vec<(KeyName, String)> = invalidation
            .keys
            .iter()
            .map(|k| (k.name(), self.redis_key(k.path())))
            .collect();
        let tag_keys: Vec<String> = invalidation
            .tags
            .iter()
            .map(|t| self.redis_key(&t.path()))
            .collect();
        let deleted = self
            .bounded(async {
                let mut conn = self.conn().await?;
                let mut tagged: Vec<(&str, Vec<String>)> = Vec::with_capacity(tag_keys.len());
                for tag_key in &tag_keys {
                    let members: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(tag_key)
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    tagged.push((tag_key, members));
                }
                let all: Vec<&str> = explicit
                    .iter()
                    .map(|(_, k)| k.as_str())
                    .chain(
                        tagged
                            .iter()
                            .flat_map(|(_, m)| m.iter().map(String::as_str)),
                    )
                    .collect();
                if all.is_empty() {
                    return Ok((0, 0));
                }
                let mut pipe = redis::pipe();
                for chunk in all.chunks(DELETE_CHUNK) {
                    pipe.cmd("DEL").arg(chunk);
                }
                // Remove only the members we deleted: a key registered after
                // our SMEMBERS stays indexed for the next invalidation.
                for (tag_key, members) in &tagged {
                    for chunk in members.chunks(DELETE_CHUNK) {
                        pipe.cmd("SREM").arg(*tag_key).arg(chunk).ignore();
                    }
                }
                let counts: Vec<usize> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
                let tagged_count: usize = tagged.iter().map(|(_, m)| m.len()).sum();
                Ok((counts.iter().sum::<usize>(), tagged_count))
            })
            .await;
        match deleted {
            Ok((deleted, tagged_count)) => {
                let metrics = &self.inner.metrics;
                for (name, _) in &explicit {
                    metrics
                        .invalidations
                        .with_label_values(&[name.as_str()])
                        .inc();
                }
                metrics
                    .invalidations
                    .with_label_values(&["tagged"])
                    .inc_by(tagged_count as u64);
                Ok(deleted)
            }
            Err(e) => {
                self.redis_failed("invalidate", &e);
                Err(e)
            }
        }
    }

    /// Round trip to Redis (`huddle cache ping`, readiness details).
    pub async fn ping(&self) -> Result<RedisHealth, CacheError> {
        let started = Instant::now();
        self.bounded(async {
            let mut conn = self.conn().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(unavailable)
        })
        .await?;
        Ok(RedisHealth {
            round_trip: started.elapsed(),
        })
    }

    /// Keys under this prefix matching `pattern` (a glob on the key path),
    /// found with SCAN — never KEYS, which blocks Redis. At most `limit`.
    pub async fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>, CacheError> {
        let matcher = self.redis_key(pattern);
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&matcher)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            found.extend(batch);
            cursor = next;
            if cursor == 0 || found.len() >= limit {
                break;
            }
        }
        found.truncate(limit);
        found.sort();
        Ok(found)
    }

    /// The raw stored text of a key path and its remaining TTL in ms
    /// (`huddle cache get`). The not-found marker is reported as such.
    pub async fn inspect(&self, path: &str) -> Result<Option<(String, i64)>, CacheError> {
        let key = self.redis_key(path);
        let mut conn = self.conn().await?;
        let (raw, ttl): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(raw.map(|raw| {
            let shown = if raw == NOT_FOUND_MARKER {
                "<not-found marker>".to_owned()
            } else {
                raw
            };
            (shown, ttl)
        }))
    }

    /// Deletes every key under this prefix (and only those). Returns how many.
    pub async fn flush_prefix(&self) -> Result<usize, CacheError> {
        let keys = self.scan("*", usize::MAX).await?;
        let mut conn = self.conn().await?;
        let mut deleted = 0;
        for chunk in keys.chunks(DELETE_CHUNK) {
            let n: usize = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            deleted += n;
        }
        Ok(deleted)
    }

    /// Server-wide `INFO stats` and `INFO keyspace` text.
    pub async fn server_info(&self) -> Result<String, CacheError> {
        let mut conn = self.conn().await?;
        let stats: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let keyspace: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(format!("{stats}\n{keyspace}"))
    }

    pub fn close(&self) {
        self.inner.pool.close();
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, CacheError> {
        self.inner.pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Timeout(_) => CacheError::Timeout(self.inner.op_timeout),
            other => CacheError::Unavailable(other.to_string()),
        })
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        tokio::time::timeout(self.inner.op_timeout, op)
            .await
            .unwrap_or(Err(CacheError::Timeout(self.inner.op_timeout)))
    }

    fn redis_failed(&self, label: &str, error: &CacheError) {
        self.inner
            .metrics
            .redis_errors
            .with_label_values(&[label])
            .inc();
        tracing::warn!(key = label, error = %error, "redis call failed; continuing without cache");
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

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

/// TTL ±10 %, so keys filled together do not all expire together.
fn jittered(ttl: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    ttl.mul_f64(factor).max(Duration::from_millis(1))
}

fn validate_prefix(prefix: &str) -> Result<(), CacheError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.ends_with(':')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CacheError::Config(format!(
            "cache prefix {prefix:?} must be 1-64 chars of [A-Za-z0-9:_.-] ending in ':'"
        )))
    }
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
    fn prefixes_are_validated() {
        assert!(validate_prefix("huddle:v1:").is_ok());
        assert!(validate_prefix("huddle:test-1a2b:").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("huddle").is_err());
        assert!(validate_prefix("a*:").is_err());
    }
}
