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

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use crate::{
    backend::{Backend, Conn, slot_groups, unavailable},
    breaker::{Breaker, BreakerState},
    keys::{CacheKey, KeyName, NOT_FOUND_TTL, Tag},
    metrics::CacheMetrics,
    rules::Invalidation,
};

/// Stored in place of a value for "does not exist". JSON never starts with a
/// NUL byte, so no value can be mistaken for it.
const NOT_FOUND_MARKER: &str = "\0not-found";
/// Prefix of a lease placeholder: `\0lease:<random token>`.
const LEASE_PREFIX: &str = "\0lease:";

/// Keys per DEL / SREM / MGET command.
const CHUNK: usize = 256;
/// Admin commands (SCAN, INFO, flush) may be slow; they are not on a
/// request path, so they get their own, longer bound.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// GET the key; if absent, take a lease on it (the placeholder expires by
/// itself if its holder dies). Returns the stored string, or nil when the
/// caller now holds the lease.
const READ_OR_LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Store the value only while the key still holds our lease.
const FILL_IF_LEASED: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Give a lease back (the loader failed) so waiters need not wait it out.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub redis_url: String,
    /// Redis Cluster seed nodes (`redis://host:port`); when non-empty the
    /// cache talks to the cluster and `redis_url` is unused.
    pub cluster_nodes: Vec<String>,
    /// Prepended to every key; carries the format version (`huddle:v1:`).
    pub prefix: String,
    pub pool_size: usize,
    /// Upper bound on any one Redis call on a request path.
    pub op_timeout: Duration,
    /// How long a lease placeholder lives if its holder never fills it.
    pub lease_ttl: Duration,
    /// How long a reader waits for another process's fill before loading
    /// for itself.
    pub lease_wait: Duration,
    /// Consecutive Redis failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips Redis before probing it.
    pub breaker_cooldown: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            cluster_nodes: Vec::new(),
            prefix: "huddle:v1:".to_owned(),
            pool_size: 16,
            op_timeout: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(3),
            lease_wait: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
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
    #[error("redis circuit breaker is open")]
    BreakerOpen,
}

/// What a single flight hands to the callers that waited on it.
#[derive(Clone)]
enum Fill {
    Value(Arc<str>),
    NotFound,
    /// The leader could not share its result; waiters load for themselves.
    Unshared,
}

/// What Redis said about a key on the read path.
enum Probe {
    Value(String),
    NotFound,
    /// We now hold the lease: load and fill.
    Leased,
    /// Another filler holds the lease.
    Busy,
    /// Redis did not answer (or the breaker is open).
    Down,
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    prefix: String,
    config: CacheConfig,
    metrics: CacheMetrics,
    breaker: Breaker,
    /// Woken when the breaker closes: Redis is back, so whoever holds
    /// deferred work (the invalidation outbox) should retry now.
    recovered: tokio::sync::Notify,
    flights: Mutex<HashMap<String, broadcast::Sender<Fill>>>,
}

/// Result of a `ping`.
#[derive(Debug, Clone)]
pub struct RedisHealth {
    pub round_trip: Duration,
}

/// Registers the key being loaded under tags, mid-load. Call [`Tagger::tag`]
/// *before* reading the tagged entity's data: then an invalidation of that
/// entity that follows the read is guaranteed to find this key.
#[derive(Clone)]
pub struct Tagger {
    cache: Cache,
    redis_key: Arc<str>,
    tag_ttl: Duration,
    /// False when this load will not fill (no lease): tagging is skipped.
    active: bool,
    failed: Arc<AtomicBool>,
}

impl Tagger {
    pub async fn tag(&self, tags: &[Tag]) {
        if !self.active || tags.is_empty() {
            return;
        }
        let secs = self.tag_ttl.as_secs().max(1);
        let tag_keys: Vec<String> = tags
            .iter()
            .map(|t| self.cache.redis_key(&t.path()))
            .collect();
        // Each tag's commands touch only its own key; on a cluster each tag
        // goes as its own pipeline so no pipeline spans slots.
        let groups: Vec<Vec<&String>> = if self.cache.inner.backend.is_cluster() {
            tag_keys.iter().map(|k| vec![k]).collect()
        } else {
            vec![tag_keys.iter().collect()]
        };
        for group in groups {
            let mut pipe = redis::pipe();
            for tag_key in group {
                pipe.cmd("SADD").arg(tag_key).arg(&*self.redis_key).ignore();
                // The index must outlive every key it lists.
                pipe.cmd("EXPIRE").arg(tag_key).arg(secs).arg("NX").ignore();
                pipe.cmd("EXPIRE").arg(tag_key).arg(secs).arg("GT").ignore();
            }
            let result = self
                .cache
                .call("tag", async |conn| {
                    pipe.query_async::<()>(conn).await.map_err(unavailable)
                })
                .await;
            if result.is_err() {
                // An untagged value could outlive its entity's update: this
                // load must not fill.
                self.failed.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

impl Cache {
    pub fn new(config: &CacheConfig, metrics: CacheMetrics) -> Result<Self, CacheError> {
        validate_prefix(&config.prefix)?;
        let backend = Backend::new(
            &config.redis_url,
            &config.cluster_nodes,
            config.pool_size,
            config.op_timeout,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                prefix: config.prefix.clone(),
                breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
                config: config.clone(),
                metrics,
                recovered: tokio::sync::Notify::new(),
                flights: Mutex::default(),
            }),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
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

    /// The Redis key for a key path: prefix + path.
    pub fn redis_key(&self, path: &str) -> String {
        format!("{}{path}", self.inner.prefix)
    }

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
        let metrics = &self.inner.metrics;
        let token = lease_token();
        let deadline = Instant::now() + self.inner.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        let leased = loop {
            match self.read_or_lease(name, redis_key, &token).await {
                Probe::NotFound => {
                    metrics.lookup(name, "not_found_hit");
                    return Ok((None, Fill::NotFound));
                }
                Probe::Value(json) => match serde_json::from_str(&json) {
                    Ok(value) => {
                        metrics.lookup(name, if waited { "lease_wait_hit" } else { "hit" });
                        return Ok((Some(value), Fill::Value(json.into())));
                    }
                    // Another shape (a deploy forgot to bump the prefix
                    // version): load, and let the TTL replace it.
                    Err(e) => {
                        tracing::warn!(key = %redis_key, error = %e, "undecodable cached value");
                        break false;
                    }
                },
                Probe::Leased => break true,
                Probe::Down => break false,
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
                        break false;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        };
        metrics.lookup(name, "miss");

        let tagger = Tagger {
            cache: self.clone(),
            redis_key: redis_key.into(),
            tag_ttl: ttl.mul_f64(1.1) + self.inner.config.lease_ttl + Duration::from_secs(1),
            active: leased,
            failed: Arc::default(),
        };
        let loaded = self.timed_load(name, loader(tagger.clone())).await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                if leased {
                    self.release_lease(redis_key, &token).await;
                }
                return Err(e);
            }
        };

        let (raw, fill_ttl, fill) = match &loaded {
            None => (NOT_FOUND_MARKER.to_owned(), NOT_FOUND_TTL, Fill::NotFound),
            Some(value) => match serde_json::to_string(value) {
                Ok(json) => {
                    let fill = Fill::Value(json.as_str().into());
                    (json, jittered(ttl), fill)
                }
                Err(e) => {
                    tracing::error!(key = %redis_key, error = %e, "value cannot be serialized; not cached");
                    if leased {
                        self.release_lease(redis_key, &token).await;
                    }
                    return Ok((loaded, Fill::Unshared));
                }
            },
        };
        let landed = if !leased {
            false
        } else if tagger.failed.load(Ordering::SeqCst) {
            self.release_lease(redis_key, &token).await;
            false
        } else {
            self.fill_if_leased(name, redis_key, &token, &raw, fill_ttl)
                .await
        };
        // In-process waiters get only a result known to be current: one
        // whose lease-checked fill landed. A value an invalidation rejected,
        // or one read while Redis was unreachable, may predate a write that
        // was acknowledged before a waiter arrived; waiters load themselves.
        Ok((loaded, if landed { fill } else { Fill::Unshared }))
    }

    async fn timed_load<T, E>(
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

    async fn read_or_lease(&self, name: KeyName, redis_key: &str, token: &str) -> Probe {
        let started = Instant::now();
        let lease_ms = millis(self.inner.config.lease_ttl);
        let cmd = read_or_lease_cmd(redis_key, token, lease_ms);
        let result = self
            .call(name.as_str(), async |conn| {
                cmd.query_async::<Option<String>>(conn)
                    .await
                    .map_err(unavailable)
            })
            .await;
        self.inner
            .metrics
            .redis_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        classify(result)
    }

    async fn fill_if_leased(
        &self,
        name: KeyName,
        redis_key: &str,
        token: &str,
        raw: &str,
        ttl: Duration,
    ) -> bool {
        let stored = self
            .call(name.as_str(), async |conn| {
                redis::cmd("EVAL")
                    .arg(FILL_IF_LEASED)
                    .arg(1)
                    .arg(redis_key)
                    .arg(token)
                    .arg(raw)
                    .arg(millis(ttl))
                    .query_async::<i64>(conn)
                    .await
                    .map_err(unavailable)
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

    async fn release_lease(&self, redis_key: &str, token: &str) {
        let _ = self
            .call("lease", async |conn| {
                redis::cmd("EVAL")
                    .arg(RELEASE_LEASE)
                    .arg(1)
                    .arg(redis_key)
                    .arg(token)
                    .query_async::<i64>(conn)
                    .await
                    .map_err(unavailable)
            })
            .await;
    }

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
        let metrics = &self.inner.metrics;
        let token = lease_token();
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k.path())).collect();
        let probes = self.read_or_lease_many(name, &redis_keys, &token).await;

        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut leased = Vec::new();
        for (i, probe) in probes.into_iter().enumerate() {
            let decoded = match probe {
                Probe::NotFound => {
                    metrics.lookup(name, "not_found_hit");
                    values.push(None);
                    continue;
                }
                Probe::Value(raw) => serde_json::from_str(&raw).ok(),
                Probe::Leased => {
                    leased.push(i);
                    None
                }
                Probe::Busy | Probe::Down => None,
            };
            match decoded {
                Some(v) => {
                    metrics.lookup(name, "hit");
                    values.push(Some(v));
                }
                None => {
                    metrics.lookup(name, "miss");
                    missing.push(i);
                    values.push(None);
                }
            }
        }
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
                let raw = match &value {
                    None => Some((NOT_FOUND_MARKER.to_owned(), NOT_FOUND_TTL)),
                    Some(v) => serde_json::to_string(v).ok().map(|j| (j, jittered(ttl))),
                };
                match raw {
                    Some((raw, ttl)) => {
                        self.fill_if_leased(name, &redis_keys[i], &token, &raw, ttl)
                            .await;
                    }
                    None => self.release_lease(&redis_keys[i], &token).await,
                }
            }
            values[i] = value;
        }
        Ok(values)
    }

    async fn read_or_lease_many(
        &self,
        name: KeyName,
        redis_keys: &[String],
        token: &str,
    ) -> Vec<Probe> {
        let lease_ms = millis(self.inner.config.lease_ttl);
        let started = Instant::now();
        let result: Result<Vec<Option<String>>, CacheError> = if self.inner.backend.is_cluster() {
            // One script per key: a pipeline may not span slots.
            let mut out = Vec::with_capacity(redis_keys.len());
            let mut failed = None;
            for key in redis_keys {
                let cmd = read_or_lease_cmd(key, token, lease_ms);
                match self
                    .call(name.as_str(), async |conn| {
                        cmd.query_async::<Option<String>>(conn)
                            .await
                            .map_err(unavailable)
                    })
                    .await
                {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        } else {
            let mut pipe = redis::pipe();
            for key in redis_keys {
                pipe.add_command(read_or_lease_cmd(key, token, lease_ms));
            }
            self.call(name.as_str(), async |conn| {
                pipe.query_async::<Vec<Option<String>>>(conn)
                    .await
                    .map_err(unavailable)
            })
            .await
        };
        self.inner
            .metrics
            .redis_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(values) => values.into_iter().map(|v| classify(Ok(v))).collect(),
            Err(_) => redis_keys.iter().map(|_| Probe::Down).collect(),
        }
    }

    /// Deletes every key a write made stale: the listed keys and every key
    /// indexed under the listed tags (and with them any lease, so no fill
    /// that started before this call can land). Returns how many Redis keys
    /// existed and were deleted. An error means some keys may still be
    /// cached; the outbox retries.
    pub async fn invalidate(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        let explicit: Vec<String> = invalidation
            .keys
            .iter()
            .map(|k| self.redis_key(k.path()))
            .collect();
        let mut tagged: Vec<(String, Vec<String>)> = Vec::with_capacity(invalidation.tags.len());
        for tag in &invalidation.tags {
            let tag_key = self.redis_key(&tag.path());
            let members: Vec<String> = self
                .call("invalidate", async |conn| {
                    redis::cmd("SMEMBERS")
                        .arg(&tag_key)
                        .query_async(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            tagged.push((tag_key, members));
        }
        let all: Vec<&str> = explicit
            .iter()
            .map(String::as_str)
            .chain(
                tagged
                    .iter()
                    .flat_map(|(_, m)| m.iter().map(String::as_str)),
            )
            .collect();
        let mut deleted = 0;
        for group in slot_groups(&all, self.inner.backend.is_cluster(), CHUNK) {
            deleted += self
                .call("invalidate", async |conn| {
                    redis::cmd("DEL")
                        .arg(&group)
                        .query_async::<usize>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
        }
        // Remove only the members we deleted: a key registered after our
        // SMEMBERS stays indexed for the next invalidation.
        for (tag_key, members) in &tagged {
            for chunk in members.chunks(CHUNK) {
                self.call("invalidate", async |conn| {
                    redis::cmd("SREM")
                        .arg(tag_key)
                        .arg(chunk)
                        .query_async::<()>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            }
        }
        let metrics = &self.inner.metrics;
        for key in &invalidation.keys {
            metrics
                .invalidations
                .with_label_values(&[key.name().as_str()])
                .inc();
        }
        let tagged_count: usize = tagged.iter().map(|(_, m)| m.len()).sum();
        metrics
            .invalidations
            .with_label_values(&["tagged"])
            .inc_by(tagged_count as u64);
        Ok(deleted)
    }

    /// Round trip to Redis (`huddle cache ping`); bypasses the breaker.
    pub async fn ping(&self) -> Result<RedisHealth, CacheError> {
        let started = Instant::now();
        self.admin(async |conn| {
            redis::cmd("PING")
                .query_async::<String>(conn)
                .await
                .map_err(unavailable)
        })
        .await?;
        Ok(RedisHealth {
            round_trip: started.elapsed(),
        })
    }

    /// Keys under this prefix matching `pattern` (a glob on the key path),
    /// found with SCAN on every node — never KEYS, which blocks Redis.
    pub async fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>, CacheError> {
        let matcher = self.redis_key(pattern);
        let scan = async {
            let mut found = Vec::new();
            for mut node in self.inner.backend.node_connections().await? {
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&matcher)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut node)
                        .await
                        .map_err(unavailable)?;
                    found.extend(batch);
                    cursor = next;
                    if cursor == 0 || found.len() >= limit {
                        break;
                    }
                }
            }
            found.sort();
            found.dedup();
            found.truncate(limit);
            Ok(found)
        };
        tokio::time::timeout(ADMIN_TIMEOUT, scan)
            .await
            .unwrap_or(Err(CacheError::Timeout(ADMIN_TIMEOUT)))
    }

    /// The stored text of a key path and its remaining TTL in ms
    /// (`huddle cache get`). Markers and leases are reported as such.
    pub async fn inspect(&self, path: &str) -> Result<Option<(String, i64)>, CacheError> {
        let key = self.redis_key(path);
        let (raw, ttl): (Option<String>, i64) = self
            .admin(async |conn| {
                let raw = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                let ttl = redis::cmd("PTTL")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .map_err(unavailable)?;
                Ok((raw, ttl))
            })
            .await?;
        Ok(raw.map(|raw| {
            let shown = if raw == NOT_FOUND_MARKER {
                "<not-found marker>".to_owned()
            } else if raw.starts_with(LEASE_PREFIX) {
                "<lease: a fill is in progress>".to_owned()
            } else {
                raw
            };
            (shown, ttl)
        }))
    }

    /// Deletes every key under this prefix (and only those). Returns how many.
    pub async fn flush_prefix(&self) -> Result<usize, CacheError> {
        let keys = self.scan("*", usize::MAX).await?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut deleted = 0;
        for group in slot_groups(&refs, self.inner.backend.is_cluster(), CHUNK) {
            deleted += self
                .admin(async |conn| {
                    redis::cmd("DEL")
                        .arg(&group)
                        .query_async::<usize>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
        }
        Ok(deleted)
    }

    /// `INFO stats` and `INFO keyspace` of every node.
    pub async fn server_info(&self) -> Result<String, CacheError> {
        let info = async {
            let mut text = String::new();
            for mut node in self.inner.backend.node_connections().await? {
                for section in ["stats", "keyspace"] {
                    let part: String = redis::cmd("INFO")
                        .arg(section)
                        .query_async(&mut node)
                        .await
                        .map_err(unavailable)?;
                    text.push_str(&part);
                    text.push('\n');
                }
            }
            Ok(text)
        };
        tokio::time::timeout(ADMIN_TIMEOUT, info)
            .await
            .unwrap_or(Err(CacheError::Timeout(ADMIN_TIMEOUT)))
    }

    pub fn close(&self) {
        self.inner.backend.close();
    }

    /// Every request-path Redis call goes through here: the breaker decides
    /// whether to try at all, the timeout bounds the wait (connection
    /// checkout included), and the outcome feeds the breaker and metrics.
    async fn call<T>(
        &self,
        label: &str,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let inner = &self.inner;
        if !inner.breaker.allow() {
            inner.metrics.breaker_rejections.inc();
            return Err(CacheError::BreakerOpen);
        }
        let timeout = inner.config.op_timeout;
        let result = tokio::time::timeout(timeout, async {
            let mut conn = inner.backend.get().await?;
            op(&mut conn).await
        })
        .await
        .unwrap_or(Err(CacheError::Timeout(timeout)));
        let transition = match &result {
            Ok(_) => inner.breaker.success(),
            Err(e) => {
                inner.metrics.redis_errors.with_label_values(&[label]).inc();
                tracing::debug!(op = label, error = %e, "redis call failed; continuing without cache");
                inner.breaker.failure()
            }
        };
        if let Some(state) = transition {
            inner.metrics.breaker_state.set(state.as_gauge());
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
        result
    }

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

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Fill>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn read_or_lease_cmd(redis_key: &str, token: &str, lease_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(READ_OR_LEASE)
        .arg(1)
        .arg(redis_key)
        .arg(token)
        .arg(lease_ms);
    cmd
}

fn classify(result: Result<Option<String>, CacheError>) -> Probe {
    match result {
        Ok(None) => Probe::Leased,
        Ok(Some(raw)) if raw == NOT_FOUND_MARKER => Probe::NotFound,
        Ok(Some(raw)) if raw.starts_with(LEASE_PREFIX) => Probe::Busy,
        Ok(Some(raw)) => Probe::Value(raw),
        Err(_) => Probe::Down,
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

fn lease_token() -> String {
    format!("{LEASE_PREFIX}{:032x}", rand::rng().random::<u128>())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
