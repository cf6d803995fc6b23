//! What a deployment tunes about the cache client.

use std::time::Duration;

use crate::error::CacheError;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub redis_url: String,
    /// Redis Cluster seed nodes (`redis://host:port`); when non-empty the
    /// cache talks to the cluster and `redis_url` is unused.
    pub cluster_nodes: Vec<String>,
    /// Prepended to every key; carries the format version (`huddle:v1:`).
    pub prefix: String,
    /// Prefixes of the versions a rolling update is replacing (or moving
    /// to). Every invalidation is applied under each of them as well, so a
    /// write made by either version reaches the keys both versions read.
    pub previous_prefixes: Vec<String>,
    /// Redis connections per process. A checkout that waits because all are
    /// busy is not a Redis failure: it never opens the breaker.
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
    /// `false`: every read goes to its loader (Postgres) and nothing is
    /// filled, as while reads are held; invalidations still run. For
    /// measuring what the cache saves (`make bench`) and for ruling the
    /// cache out when diagnosing; never for production.
    pub reads: bool,
    /// Replicas that must acknowledge an invalidation's writes (`WAIT`)
    /// before it counts as applied, so a failover cannot lose it.
    pub wait_replicas: WaitReplicas,
    /// How long one `WAIT` may block before its shortfall fails the apply.
    pub wait_timeout: Duration,
    /// Redis Sentinel addresses (`host:port`); when non-empty the cache asks
    /// them for the primary of [`CacheConfig::sentinel_master`] and
    /// `redis_url` is unused.
    pub sentinels: Vec<String>,
    pub sentinel_master: String,
}

/// How many replicas an invalidation waits for (`HUDDLE_REDIS_WAIT_REPLICAS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReplicas {
    /// No `WAIT`: a standalone Redis, or durability knowingly given up.
    Off,
    /// Exactly this many; a primary with fewer connected fails every apply
    /// (rows kept, reads held) until enough are back.
    Count(u32),
    /// As many as the primary reports connected (`INFO replication`,
    /// re-read at most once a second): nothing with none, all with some.
    Auto,
}

impl std::str::FromStr for WaitReplicas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "0" => Ok(Self::Off),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 64)
                .map(Self::Count)
                .ok_or_else(|| format!("{s:?} is not `auto` or a replica count 0-64")),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            cluster_nodes: Vec::new(),
            prefix: "huddle:v1:".to_owned(),
            previous_prefixes: Vec::new(),
            pool_size: 32,
            op_timeout: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(3),
            lease_wait: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            reads: true,
            wait_replicas: WaitReplicas::Auto,
            wait_timeout: Duration::from_millis(100),
            sentinels: Vec::new(),
            sentinel_master: "huddle".to_owned(),
        }
    }
}

impl CacheConfig {
    pub(crate) fn validate(&self) -> Result<(), CacheError> {
        validate_prefix(&self.prefix)?;
        for prefix in &self.previous_prefixes {
            validate_prefix(prefix)?;
        }
        if self.pool_size == 0 {
            return Err(CacheError::Config("the Redis pool size must be > 0".into()));
        }
        if !self.sentinels.is_empty() && !self.cluster_nodes.is_empty() {
            return Err(CacheError::Config(
                "set either Redis Sentinels or Redis Cluster nodes, not both".into(),
            ));
        }
        for sentinel in &self.sentinels {
            let port = sentinel.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) || sentinel.contains('/') {
                return Err(CacheError::Config(format!(
                    "Redis Sentinel {sentinel:?} must be host:port"
                )));
            }
        }
        if !self.sentinels.is_empty() && self.sentinel_master.trim().is_empty() {
            return Err(CacheError::Config(
                "the Redis Sentinel master name must not be empty".into(),
            ));
        }
        if self.wait_replicas != WaitReplicas::Off && self.wait_timeout.is_zero() {
            // WAIT 0 blocks forever.
            return Err(CacheError::Config(
                "the Redis WAIT timeout must be > 0 ms".into(),
            ));
        }
        Ok(())
    }

    /// Every configured prefix: ours first.
    pub(crate) fn all_prefixes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.prefix.as_str()).chain(
            self.previous_prefixes
                .iter()
                .map(String::as_str)
                .filter(|p| *p != self.prefix),
        )
    }
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
    fn wait_and_sentinel_settings_are_validated() {
        assert_eq!("auto".parse(), Ok(WaitReplicas::Auto));
        assert_eq!("0".parse(), Ok(WaitReplicas::Off));
        assert_eq!("2".parse(), Ok(WaitReplicas::Count(2)));
        assert!("-1".parse::<WaitReplicas>().is_err());
        assert!("all".parse::<WaitReplicas>().is_err());
        let sentinel = |s: &str| CacheConfig {
            sentinels: vec![s.to_owned()],
            ..CacheConfig::default()
        };
        assert!(sentinel("10.0.0.1:26379").validate().is_ok());
        assert!(sentinel("10.0.0.1").validate().is_err());
        assert!(sentinel("redis://10.0.0.1:26379").validate().is_err());
        let no_timeout = CacheConfig {
            wait_timeout: Duration::ZERO,
            ..CacheConfig::default()
        };
        assert!(no_timeout.validate().is_err());
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
    fn previous_prefixes_and_pool_size_are_validated() {
        let bad_previous = CacheConfig {
            previous_prefixes: vec!["huddle:v0".into()],
            ..CacheConfig::default()
        };
        assert!(bad_previous.validate().is_err());
        let no_pool = CacheConfig {
            pool_size: 0,
            ..CacheConfig::default()
        };
        assert!(no_pool.validate().is_err());
        let rolling = CacheConfig {
            previous_prefixes: vec!["huddle:v1:".into(), "huddle:v0:".into()],
            ..CacheConfig::default()
        };
        assert!(rolling.validate().is_ok());
        assert_eq!(
            rolling.all_prefixes().collect::<Vec<_>>(),
            ["huddle:v1:", "huddle:v0:"]
        );
    }
}
