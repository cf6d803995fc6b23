//! The Lua scripts of the read path. Each is a [`redis::Script`]: sent as
//! `EVALSHA` (40 bytes, not the script's text, on every call), loaded and
//! retried by redis-rs on `NOSCRIPT` (a restarted or flushed server, or a
//! cluster node that has not seen it yet: `SCRIPT LOAD` goes to every
//! primary).

use std::sync::LazyLock;

use redis::Script;

/// GET the key; if absent, take a lease on it (the placeholder expires by
/// itself if its holder dies). Returns the stored string, or nil when the
/// caller now holds the lease.
pub(super) static READ_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
",
    )
});

/// Store the value only while the key still holds our lease.
pub(super) static FILL_IF_LEASED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// Give a lease back (the loader failed) so waiters need not wait it out.
pub(super) static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Whether an error is Redis saying it does not know a script's SHA.
pub(super) fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
