//! The shared cache contract of every Huddle service: the key catalog and TTL
//! table (SPEC §4), the invalidation rule table (SPEC §5), and the Redis
//! cache-aside client (SPEC §6). Services never build a key string or pick a
//! TTL themselves; they name a key here and call [`Cache::get_or_load`].

mod backend;
mod breaker;
mod client;
mod config;
mod epoch;
mod error;
mod keys;
mod metrics;
mod rules;
mod window;

pub use breaker::BreakerState;
pub use client::{Appended, Cache, EvictionCheck, RedisHealth, Tagger, Ttl};
pub use config::{CacheConfig, WaitReplicas};
pub use error::CacheError;
pub use keys::{
    CacheKey, KeyName, NOT_FOUND_TTL, RECENT_CHATS_LIMIT, Tag, TagKind, normalize_email,
};
pub use metrics::CacheMetrics;
pub use rules::{Cond, Invalidation, RULES, Rule, Target, WindowAppend, WindowEntry, WriteKind};
