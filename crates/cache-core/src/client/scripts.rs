//! The Lua scripts of the read path. Each is a [`redis::Script`]: sent as
//! `EVALSHA` (40 bytes, not the script's text, on every call), loaded and
//! retried by redis-rs on `NOSCRIPT` (a restarted or flushed server, or a
//! cluster node that has not seen it yet: `SCRIPT LOAD` goes to every
//! primary).

use std::sync::LazyLock;

use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::{
    backend::Conn,
    error::{CacheError, unavailable},
};

/// GET the key; if absent, take a lease on it (the placeholder expires by
/// itself if its holder dies). Returns the stored string, or nil when the
/// caller now holds the lease.
///
/// The `#!lua` line flags it as a script that may write, so a replica
/// refuses it whole (`READONLY`) even when the key is there. Every read
/// goes through it: a connection to a primary that was demoted meanwhile
/// (Sentinel switched; the pool kept its connections) cannot answer a hit
/// from data that may lack the new primary's deletes — the call fails, the
/// connection is dropped and the read loads from the database. Without the
/// flag only a miss (the lease's SET) would fail there. (A flagged script
/// is also refused while the primary is out of memory under `noeviction`
/// or short of `min-replicas-to-write`: reads then load from the database.)
pub(super) static READ_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
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

/// Appends one entry to a cached window (KEYS: the window; ARGV: the
/// entry's JSON, its `sentAt`, its `id`, the window's length, the lease
/// prefix, the not-found marker). The window is a JSON array ordered by
/// (`sentAt`, `id`), both strings that sort as text.
/// - absent: nothing (the next read loads the window with the entry);
/// - a lease: deleted, so a fill that read the database before the entry's
///   commit cannot land; a marker or an undecodable value: deleted too;
/// - else the entry goes to its place in the order (found from the end,
///   where new entries land), unless an entry with that `sentAt` and `id` is
///   there already (a replay), and the oldest entries past the length are
///   dropped; the TTL is kept (an append does not make the window live
///   longer than its last fill allows).
///
/// Returns 1 appended, 0 nothing to do (absent or duplicate), -1 deleted.
pub(super) static APPEND_TO_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v == ARGV[6] or string.sub(v, 1, #ARGV[5]) == ARGV[5] then
  redis.call('DEL', KEYS[1])
  return -1
end
local ok, list = pcall(cjson.decode, v)
if not ok or type(list) ~= 'table' then
  redis.call('DEL', KEYS[1])
  return -1
end
local at, id = ARGV[2], ARGV[3]
local pos = #list + 1
for i = #list, 1, -1 do
  local e = list[i]
  if e.sentAt == at and e.id == id then return 0 end
  if e.sentAt < at or (e.sentAt == at and e.id < id) then break end
  pos = i
end
table.insert(list, pos, cjson.decode(ARGV[1]))
local limit = tonumber(ARGV[4])
while #list > limit do table.remove(list, 1) end
redis.call('SET', KEYS[1], cjson.encode(list), 'KEEPTTL')
return 1
",
    )
});

/// Whether an error is Redis saying it does not know a script's SHA.
pub(super) fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Detaches a tag's members for an invalidation (KEYS: tag, registry, own
/// pending set; all in the tag's slot). The members move, atomically, to a
/// pending set of this invalidation's own, listed in the tag's registry; the
/// tag starts empty, so a key tagged from now on is in the tag again, never
/// lost to this invalidation's cleanup. Returns the members of every pending
/// set (this one, and any an earlier invalidation left behind when it
/// failed) with the set names, so a retry still finds what a failed attempt
/// detached. Reply: { {set names}, {members} }. With ARGV[1] = 'own' (a
/// prune) only the members this call moved are returned.
pub(super) static DETACH_TAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local members = redis.call('SMEMBERS', KEYS[1])
if #members > 0 then
  for i = 1, #members, 1000 do
    redis.call('SADD', KEYS[3], unpack(members, i, math.min(i + 999, #members)))
  end
  redis.call('SADD', KEYS[2], KEYS[3])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PERSIST', KEYS[3])
    redis.call('PERSIST', KEYS[2])
  else
    redis.call('PEXPIRE', KEYS[3], ttl)
    local left = redis.call('PTTL', KEYS[2])
    if left < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
  end
  redis.call('DEL', KEYS[1])
end
if ARGV[1] == 'own' then return {{KEYS[3]}, members} end
local names, out = {}, {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local part = redis.call('SMEMBERS', name)
  if #part == 0 then
    redis.call('SREM', KEYS[2], name)
  else
    table.insert(names, name)
    for _, m in ipairs(part) do table.insert(out, m) end
  end
end
return {names, out}
",
    )
});

/// After every member a pending set lists was deleted, forget the sets
/// (KEYS: registry; ARGV: set names). Sets are written once, so nothing
/// was added to them since they were read.
pub(super) static FORGET_PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, name in ipairs(ARGV) do
  redis.call('DEL', name)
  redis.call('SREM', KEYS[1], name)
end
return #ARGV
",
    )
});

/// Ends a prune (KEYS: tag, registry, the prune's pending set; ARGV: the
/// members whose keys still exist). If no invalidation consumed the pending
/// set meanwhile, the survivors go back into the tag (with the set's TTL)
/// and the set is forgotten; if one did, it deleted them all.
pub(super) static REATTACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[3])
for i = 1, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if #ARGV > 0 and ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], KEYS[3])
return #ARGV
",
    )
});

/// How many times a script is loaded for one call before the call fails.
/// Each NOSCRIPT after a load means the server forgot it again in between
/// (a `SCRIPT FLUSH`, a failover to a replica that never saw it); a few
/// such flushes in a row are survivable, an endless stream is an outage.
pub(super) const SCRIPT_LOADS: usize = 4;

/// Runs a script by SHA. redis-rs loads it on NOSCRIPT and retries once; if
/// the server forgot it again before that retry, load and retry again, up
/// to [`SCRIPT_LOADS`] times.
pub(super) async fn invoke<T: FromRedisValue>(
    invocation: &ScriptInvocation<'_>,
    conn: &mut Conn,
) -> Result<T, CacheError> {
    let mut loads = 1;
    loop {
        match invocation.invoke_async(&mut *conn).await {
            Err(e) if is_noscript(&e) && loads < SCRIPT_LOADS => loads += 1,
            other => return other.map_err(unavailable),
        }
    }
}
