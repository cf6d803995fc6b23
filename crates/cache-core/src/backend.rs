//! The Redis connection behind the cache: one server or a Redis Cluster,
//! behind one connection type, plus the slot arithmetic that keeps every
//! multi-key command within one hash slot (no CROSSSLOT errors).
//!
//! Every new connection to a single server (direct or found through
//! Sentinel) first checks whose primary it reached ([`Epoch::observe`]), so
//! no request uses a server the cache has not placed in its epoch.

use std::{sync::Arc, time::Duration};

use deadpool_redis::Runtime;
use redis::{Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike};

use crate::{
    config::CacheConfig,
    epoch::Epoch,
    error::{CacheError, unavailable},
};

pub(crate) enum Backend {
    Single {
        pool: deadpool_redis::Pool,
        url: String,
    },
    Cluster {
        pool: deadpool_redis::cluster::Pool,
        /// Seed node URLs; admin commands (SCAN, INFO) visit each.
        nodes: Vec<String>,
    },
    /// The primary Sentinel names, asked again for every new connection.
    Sentinel {
        pool: deadpool_redis::sentinel::Pool,
        sentinels: Vec<String>,
        master: String,
        /// The primary's address Sentinel named last.
        named: std::sync::Mutex<Option<String>>,
    },
}

pub(crate) enum Conn {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
    Sentinel(deadpool_redis::sentinel::Connection),
}

impl Conn {
    /// Closes this connection instead of returning it to the pool.
    pub(crate) fn discard(self) {
        match self {
            Self::Single(c) => drop(deadpool_redis::Connection::take(c)),
            Self::Cluster(c) => drop(deadpool_redis::cluster::Connection::take(c)),
            Self::Sentinel(c) => drop(deadpool_redis::sentinel::Connection::take(c)),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

impl Backend {
    /// The connection pool's state (size, idle, waiters), for metrics.
    pub(crate) fn pool_status(&self) -> deadpool_redis::Status {
        match self {
            Self::Single { pool, .. } => pool.status(),
            Self::Cluster { pool, .. } => pool.status(),
            Self::Sentinel { pool, .. } => pool.status(),
        }
    }

    pub(crate) fn new(config: &CacheConfig, epoch: &Arc<Epoch>) -> Result<Self, CacheError> {
        let timeout = config.op_timeout;
        let mut limits = deadpool_redis::PoolConfig::new(config.pool_size);
        limits.timeouts.wait = Some(timeout);
        limits.timeouts.create = Some(timeout.max(Duration::from_millis(500)));
        limits.timeouts.recycle = Some(timeout);
        let built = |e: deadpool::managed::BuildError| CacheError::Config(e.to_string());
        let configured = |e: deadpool_redis::ConfigError| CacheError::Config(e.to_string());
        if !config.sentinels.is_empty() {
            let urls = config
                .sentinels
                .iter()
                .map(|s| format!("redis://{s}"))
                .collect::<Vec<_>>();
            let mut sentinel = deadpool_redis::sentinel::Config::from_urls(
                urls,
                config.sentinel_master.clone(),
                deadpool_redis::sentinel::SentinelServerType::Master,
            );
            sentinel.pool = Some(limits);
            let epoch = epoch.clone();
            let pool = sentinel
                .builder()
                .map_err(configured)?
                .runtime(Runtime::Tokio1)
                .post_create(deadpool::managed::Hook::async_fn(move |conn, _| {
                    let epoch = epoch.clone();
                    Box::pin(async move { observe(&epoch, conn).await })
                }))
                .build()
                .map_err(built)?;
            Ok(Self::Sentinel {
                pool,
                sentinels: config.sentinels.clone(),
                master: config.sentinel_master.clone(),
                named: std::sync::Mutex::default(),
            })
        } else if config.cluster_nodes.is_empty() {
            let mut single = deadpool_redis::Config::from_url(&config.redis_url);
            single.pool = Some(limits);
            let epoch = epoch.clone();
            let pool = single
                .builder()
                .map_err(configured)?
                .runtime(Runtime::Tokio1)
                .post_create(deadpool::managed::Hook::async_fn(move |conn, _| {
                    let epoch = epoch.clone();
                    Box::pin(async move { observe(&epoch, conn).await })
                }))
                .build()
                .map_err(built)?;
            Ok(Self::Single {
                pool,
                url: config.redis_url.clone(),
            })
        } else {
            let mut cluster =
                deadpool_redis::cluster::Config::from_urls(config.cluster_nodes.clone());
            cluster.pool = Some(limits);
            let pool = cluster
                .create_pool(Some(Runtime::Tokio1))
                .map_err(|e| CacheError::Config(e.to_string()))?;
            Ok(Self::Cluster {
                pool,
                nodes: config.cluster_nodes.clone(),
            })
        }
    }

    /// Whether Sentinel now names another primary than it did last time
    /// (then every pooled connection is closed: they lead to the old one,
    /// which keeps answering until Sentinel demotes it). False when no
    /// Sentinel answers: the pool's own connections decide then.
    pub(crate) async fn sentinel_switched(&self) -> bool {
        let Self::Sentinel {
            pool,
            sentinels,
            master,
            named,
        } = self
        else {
            return false;
        };
        let mut now = None;
        for sentinel in sentinels {
            let Ok(client) = redis::Client::open(format!("redis://{sentinel}")) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            // `SENTINEL MASTER`, as the pool's own lookup reads it: it names
            // the new primary once the failover is complete (an address
            // named earlier would be refused by that lookup anyway).
            let fields: Result<std::collections::HashMap<String, String>, _> =
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(master)
                    .query_async(&mut conn)
                    .await;
            if let Ok(fields) = fields
                && let (Some(ip), Some(port)) = (fields.get("ip"), fields.get("port"))
            {
                now = Some(format!("{ip}:{port}"));
                break;
            }
        }
        let Some(now) = now else {
            return false;
        };
        let before = named
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(now.clone());
        let switched = before.is_some_and(|b| b != now);
        if switched {
            tracing::warn!(primary = %now, "sentinel switched the redis primary; reconnecting");
            pool.retain(|_, _| false);
        }
        switched
    }

    /// Sentinel's answer has not been read yet (it is, on the next call).
    pub(crate) fn sentinel_unknown(&self) -> bool {
        matches!(self, Self::Sentinel { named, .. }
            if named.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_none())
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    pub(crate) async fn get(&self) -> Result<Conn, CacheError> {
        match self {
            Self::Single { pool, .. } => pool.get().await.map(Conn::Single).map_err(pool_error),
            Self::Cluster { pool, .. } => pool.get().await.map(Conn::Cluster).map_err(pool_error),
            Self::Sentinel { pool, .. } => pool.get().await.map(Conn::Sentinel).map_err(pool_error),
        }
    }

    /// One plain connection per node, for commands that must visit every
    /// node (SCAN) or any one node (INFO). The single server counts as one.
    pub(crate) async fn node_connections(
        &self,
    ) -> Result<Vec<redis::aio::MultiplexedConnection>, CacheError> {
        let urls: Vec<String> = match self {
            Self::Single { url, .. } => vec![url.clone()],
            Self::Cluster { nodes, .. } => nodes.clone(),
            // The primary Sentinel names now, on a connection of its own.
            Self::Sentinel { pool, .. } => {
                let conn = pool.get().await.map_err(pool_error)?;
                return Ok(vec![deadpool_redis::sentinel::Connection::take(conn)]);
            }
        };
        let mut conns = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
            conns.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(unavailable)?,
            );
        }
        Ok(conns)
    }

    /// Every connection the pool may open is open and checked out.
    pub(crate) fn exhausted(&self) -> bool {
        let status = self.pool_status();
        status.size >= status.max_size && status.available == 0
    }

    pub(crate) fn close(&self) {
        match self {
            Self::Single { pool, .. } => pool.close(),
            Self::Cluster { pool, .. } => pool.close(),
            Self::Sentinel { pool, .. } => pool.close(),
        }
    }
}

/// The post-create hook: a connection is handed out only once its server's
/// identity is in the epoch (and it is a primary).
async fn observe(
    epoch: &Epoch,
    conn: &mut redis::aio::MultiplexedConnection,
) -> deadpool::managed::HookResult<redis::RedisError> {
    match epoch.observe(conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "redis connection refused: primary identity unknown");
            Err(deadpool::managed::HookError::Backend(e))
        }
    }
}

fn pool_error(e: deadpool_redis::PoolError) -> CacheError {
    match e {
        deadpool_redis::PoolError::Timeout(deadpool_redis::TimeoutType::Wait) => {
            CacheError::PoolExhausted
        }
        deadpool_redis::PoolError::Timeout(_) => CacheError::Unavailable("pool timeout".into()),
        other => CacheError::Unavailable(other.to_string()),
    }
}

/// Splits keys into groups that each fall in one hash slot (cluster), or one
/// group of all keys (single server), each group at most `chunk` long.
pub(crate) fn slot_groups<'a>(keys: &[&'a str], cluster: bool, chunk: usize) -> Vec<Vec<&'a str>> {
    if !cluster {
        return keys.chunks(chunk.max(1)).map(<[&str]>::to_vec).collect();
    }
    let mut by_slot: std::collections::BTreeMap<u16, Vec<&'a str>> = Default::default();
    for key in keys {
        by_slot.entry(slot(key)).or_default().push(key);
    }
    by_slot
        .into_values()
        .flat_map(|group| {
            group
                .chunks(chunk.max(1))
                .map(<[&str]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of the key, or of
/// its `{hash tag}` when it has a non-empty one, modulo 16384.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|b| *b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        // An empty first tag hashes the whole key; only the first tag counts.
        assert_eq!(slot("foo{}{bar}"), 8363);
        assert_eq!(slot("foo{{bar}}zap"), 4015);
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn groups_never_mix_slots() {
        let keys = ["a", "b", "c", "{a}x", "{a}y"];
        for group in slot_groups(&keys, true, 100) {
            assert!(group.iter().all(|k| slot(k) == slot(group[0])), "{group:?}");
        }
        let all: usize = slot_groups(&keys, true, 100).iter().map(Vec::len).sum();
        assert_eq!(all, keys.len());
        assert_eq!(slot_groups(&keys, false, 2).len(), 3);
    }
}
