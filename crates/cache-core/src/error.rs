//! The one error type of the cache client. Its own module so the backend and
//! the client both depend on it, not on each other.

use std::time::Duration;

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
    /// Every pooled connection was busy for the whole call bound: this
    /// process is busy, Redis is not failing.
    #[error("no redis connection free in the pool")]
    PoolExhausted,
    /// The primary applied the writes, but fewer replicas than required
    /// acknowledged them in time: a failover now could lose them.
    #[error("redis writes reached {acked} of {required} replicas in time")]
    NotReplicated { acked: u32, required: u32 },
}

pub(crate) fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}
