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
}

pub(crate) fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}
