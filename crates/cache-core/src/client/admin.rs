//! Operator commands (`huddle cache …`): ping, scan, inspect, flush, info.
//! Not on a request path: they bypass the breaker and get a longer bound.

use std::time::{Duration, Instant};

use super::{
    ADMIN_TIMEOUT, CHUNK, Cache,
    lease::{LEASE_PREFIX, NOT_FOUND_MARKER},
};
use crate::{
    backend::slot_groups,
    error::{CacheError, unavailable},
};

/// Whether Redis may evict keys. Correctness needs it not to: an evicted
/// tag set (they carry TTLs, so `volatile-*` policies pick them too) loses
/// the index of values that are still cached, and the entity's next write
/// no longer reaches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionCheck {
    /// Every node: no `maxmemory`, or `maxmemory-policy noeviction`.
    Safe(String),
    /// Some node may evict; the text names it and its policy.
    Unsafe(String),
    /// `CONFIG GET` is unavailable (disabled or renamed, as some managed
    /// services do) or a node did not answer: the operator must check.
    Unknown(String),
}

impl EvictionCheck {
    pub fn is_safe(&self) -> bool {
        matches!(self, Self::Safe(_))
    }
}

/// Result of a `ping`.
#[derive(Debug, Clone)]
pub struct RedisHealth {
    pub round_trip: Duration,
}

impl Cache {
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
        self.scan_raw(&self.redis_key(pattern), limit).await
    }

    /// SCAN of a raw pattern (prefix included) on every node.
    async fn scan_raw(&self, matcher: &str, limit: usize) -> Result<Vec<String>, CacheError> {
        let scan = async {
            let mut found = Vec::new();
            for mut node in self.inner.backend.node_connections().await? {
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(matcher)
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
        let mut keys = self.scan("*", usize::MAX).await?;
        // Tags' pending sets are named `{<prefix>tag:…}:pending…`.
        let braced = format!("{{{}*", self.prefix());
        keys.extend(self.scan_raw(&braced, usize::MAX).await?);
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

    /// Reads `maxmemory` and `maxmemory-policy` of every node (for start-up
    /// logs and readiness details); see [`EvictionCheck`].
    pub async fn check_eviction(&self) -> EvictionCheck {
        let check = async {
            let mut seen = Vec::new();
            for mut node in self.inner.backend.node_connections().await? {
                let mut get = async |name: &str| -> Result<String, CacheError> {
                    let pair: Vec<String> = redis::cmd("CONFIG")
                        .arg("GET")
                        .arg(name)
                        .query_async(&mut node)
                        .await
                        .map_err(unavailable)?;
                    pair.into_iter()
                        .nth(1)
                        .ok_or_else(|| CacheError::Unavailable(format!("no {name} in CONFIG GET")))
                };
                let maxmemory = get("maxmemory").await?;
                let policy = get("maxmemory-policy").await?;
                let safe = maxmemory == "0" || policy == "noeviction";
                seen.push((
                    safe,
                    format!("maxmemory={maxmemory} maxmemory-policy={policy}"),
                ));
            }
            Ok::<_, CacheError>(seen)
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, check).await {
            Ok(Ok(seen)) => match seen.iter().find(|(safe, _)| !safe) {
                Some((_, text)) => EvictionCheck::Unsafe(text.clone()),
                None => {
                    EvictionCheck::Safe(seen.first().map(|(_, t)| t.clone()).unwrap_or_default())
                }
            },
            Ok(Err(e)) => EvictionCheck::Unknown(e.to_string()),
            Err(_) => EvictionCheck::Unknown(CacheError::Timeout(ADMIN_TIMEOUT).to_string()),
        }
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
}
