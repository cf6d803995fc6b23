//! Failover: an invalidation counts as applied only once it would survive
//! the primary's loss (`WAIT`), and when the primary changes — a repointed
//! endpoint or a Sentinel switch — the cache abandons every key the old one
//! held (a new key generation), so a promoted replica that missed deletes
//! never serves what they deleted. Each test starts its own primary, a
//! replica behind a link it can stall, and (for Sentinel) a sentinel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use cache_core::{
    Cache, CacheConfig, CacheError, CacheKey, CacheMetrics, Invalidation, WaitReplicas,
};
use huddle_testkit::{TestRedis, TestSentinel, eventually, link::FrozenLink, proxy::TcpProxy};
use uuid::Uuid;

type Infallible = std::convert::Infallible;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A primary, its replica behind a stallable link, and the endpoint the
/// cache is given (a proxy that can be repointed, as DNS or a VIP is).
struct Pair {
    primary: TestRedis,
    link: FrozenLink,
    replica: TestRedis,
    endpoint: TcpProxy,
}

async fn pair() -> Pair {
    let primary = TestRedis::start();
    let link = FrozenLink::start(loopback(primary.port())).await.unwrap();
    let link_port = link.port();
    let replica = tokio::task::spawn_blocking(move || TestRedis::replica_of(link_port))
        .await
        .unwrap();
    let endpoint = TcpProxy::start(loopback(primary.port())).await.unwrap();
    Pair {
        primary,
        link,
        replica,
        endpoint,
    }
}

impl Pair {
    /// The replica takes over and the endpoint now leads to it; open
    /// connections through the endpoint are cut, as a moved VIP cuts them.
    fn fail_over(&self) {
        self.replica.promote();
        self.endpoint.point_at(loopback(self.replica.port()));
        self.endpoint.set_up(false);
        self.endpoint.set_up(true);
    }
}

fn config(wait: WaitReplicas) -> CacheConfig {
    CacheConfig {
        prefix: format!("huddle:test-fo-{}:", Uuid::new_v4().simple()),
        op_timeout: Duration::from_millis(200),
        wait_replicas: wait,
        wait_timeout: Duration::from_millis(100),
        ..CacheConfig::default()
    }
}

fn cache(config: &CacheConfig) -> Cache {
    Cache::new(
        config,
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

async fn read(cache: &Cache, key: &CacheKey, db: &str) -> String {
    let db = db.to_owned();
    cache
        .get_or_load(key, key.ttl(), &[], || async move {
            Ok::<_, Infallible>(Some(db))
        })
        .await
        .unwrap()
        .unwrap()
}

/// Fills `key` with "v1" and waits until the replica holds it too.
async fn cached_everywhere(cache: &Cache, replica: &TestRedis, key: &CacheKey) {
    assert_eq!(read(cache, key, "v1").await, "v1");
    let raw = cache.redis_key(key.path());
    let replicated = eventually(Duration::from_secs(5), async || {
        replica
            .command(&["GET", &raw])
            .is_some_and(|v| v.contains("v1"))
    })
    .await;
    assert!(replicated, "the replica never got the value");
}

fn update(user: Uuid) -> Invalidation {
    Invalidation::user_profile_update(user, "old@example.com", "new@example.com")
}

/// (a) The replication link stalls (open, silent): the primary applies the
/// DEL, but no replica acknowledges it, so the invalidation fails as a
/// refused one does — the outbox keeps its row and holds reads. The replica
/// is then promoted with the old value still in it; no read serves it.
///
/// Seen to fail with `wait_replicas: Off` (the behaviour before): the
/// invalidation returned Ok(1), so the outbox would have deleted its row
/// (issue 19: 842 of 842 reads stale after such a failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_fails_the_apply_and_its_promotion_serves_nothing_old() {
    let pair = pair().await;
    let config = CacheConfig {
        redis_url: format!("redis://{}", pair.endpoint.addr()),
        ..config(WaitReplicas::Auto)
    };
    let cache = cache(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    cached_everywhere(&cache, &pair.replica, &key).await;
    let raw = cache.redis_key(key.path());

    pair.link.freeze();
    let applied = cache.invalidate(&update(user)).await;
    assert!(
        matches!(
            applied,
            Err(CacheError::NotReplicated {
                acked: 0,
                required: 1
            })
        ),
        "an unreplicated DEL counted as applied: {applied:?}"
    );
    assert_eq!(pair.primary.command(&["EXISTS", &raw]).unwrap().trim(), "0");

    pair.fail_over();
    // The new primary still holds the value the lost DEL deleted…
    assert!(pair.replica.command(&["GET", &raw]).unwrap().contains("v1"));
    // …and no read serves it.
    for _ in 0..20 {
        assert_eq!(read(&cache, &key, "v2").await, "v2");
    }
    assert_ne!(
        cache.key_prefix(),
        config.prefix,
        "the key generation did not move"
    );
}

/// (b) WAIT off, the endpoint repointed to a promoted replica that missed a
/// DEL: the cache sees another primary on its next connection, moves its
/// keys to a new generation, and the old value is never read.
///
/// Seen to fail with the generation move disabled (`Epoch::move_to` keeping
/// the old prefix): every read after the failover answered "v1", the value
/// the write had deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repointed_endpoint_moves_the_key_generation() {
    let pair = pair().await;
    let config = CacheConfig {
        redis_url: format!("redis://{}", pair.endpoint.addr()),
        ..config(WaitReplicas::Off)
    };
    let cache = cache(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    cached_everywhere(&cache, &pair.replica, &key).await;

    pair.link.freeze();
    cache.invalidate(&update(user)).await.unwrap();
    pair.fail_over();
    for _ in 0..20 {
        assert_eq!(read(&cache, &key, "v2").await, "v2");
    }
    // A process started after the failover agrees on the generation (it
    // finds the old primary's marker on the new one), so the two keep
    // invalidating each other's keys.
    let late = self::cache(&config);
    late.ping().await.unwrap(); // its first connection reads the marker
    assert_eq!(read(&late, &key, "v3").await, "v2");
    assert_eq!(late.key_prefix(), cache.key_prefix());
    late.invalidate(&update(user)).await.unwrap();
    assert_eq!(read(&cache, &key, "v3").await, "v3");
}

/// (c) Through Redis Sentinel: the link stalls, the invalidation fails
/// (not replicated), Sentinel fails over to the replica that missed the
/// DEL and demotes the old primary; reads never serve the old value and the
/// cache follows Sentinel to the new primary under a new generation.
///
/// Seen to fail with the generation move disabled: once Sentinel had
/// switched, reads answered "v1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_serves_nothing_old() {
    let pair = pair().await;
    let name = format!("fo{}", Uuid::new_v4().simple());
    let primary_port = pair.primary.port();
    let sentinel = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || TestSentinel::start(&name, primary_port))
            .await
            .unwrap()
    };
    let config = CacheConfig {
        sentinels: vec![sentinel.addr()],
        sentinel_master: name,
        ..config(WaitReplicas::Auto)
    };
    let cache = cache(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    cached_everywhere(&cache, &pair.replica, &key).await;

    pair.link.freeze();
    assert!(matches!(
        cache.invalidate(&update(user)).await,
        Err(CacheError::NotReplicated { .. })
    ));
    let sentinel = Arc::new(sentinel);
    let switching = sentinel.clone();
    tokio::task::spawn_blocking(move || switching.fail_over(primary_port))
        .await
        .unwrap();
    assert_eq!(sentinel.primary_port(), Some(pair.replica.port()));
    let moved = eventually(Duration::from_secs(10), async || {
        assert_eq!(read(&cache, &key, "v2").await, "v2");
        cache.key_prefix() != config.prefix
    })
    .await;
    assert!(
        moved,
        "the cache never followed Sentinel to the new primary"
    );
    assert_eq!(read(&cache, &key, "v2").await, "v2");
}

/// (d) A fill that started before a write holds the key's lease; the
/// write's DEL (which takes the lease away) is lost in a failover, so the
/// promoted replica still holds that lease. The fill lands there — under
/// the abandoned generation, where nobody reads.
///
/// Seen to fail with the generation move disabled: the pre-write value
/// landed on the new primary and the next read served it ("old").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_delete_was_lost_lets_no_old_fill_land() {
    let pair = pair().await;
    let config = CacheConfig {
        redis_url: format!("redis://{}", pair.endpoint.addr()),
        lease_ttl: Duration::from_secs(30),
        ..config(WaitReplicas::Auto)
    };
    let cache = cache(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    let raw = cache.redis_key(key.path());
    let release = Arc::new(tokio::sync::Notify::new());
    let filler = {
        let (cache, key, release) = (cache.clone(), key.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, key.ttl(), &[], || async move {
                    release.notified().await;
                    Ok::<_, Infallible>(Some("old".to_owned()))
                })
                .await
        })
    };
    let leased = eventually(Duration::from_secs(5), async || {
        pair.replica
            .command(&["GET", &raw])
            .is_some_and(|v| v.contains("lease"))
    })
    .await;
    assert!(leased, "the lease never reached the replica");

    pair.link.freeze();
    assert!(cache.invalidate(&update(user)).await.is_err());
    pair.fail_over();
    release.notify_one();
    filler.await.unwrap().unwrap();
    assert_eq!(read(&cache, &key, "new").await, "new");
}

/// (e) A primary demoted under open connections (Sentinel switched, or
/// `REPLICAOF` by an operator): its data may lack the new primary's
/// deletes, so not even a hit may be read from it. The read script is
/// flagged as writing (`#!lua`), which a replica refuses whole; the call
/// fails within the second before the connection's next identity check,
/// the connection is dropped, and the read loads from the database.
///
/// Seen to fail with the `#!lua` line removed: the read answered the
/// demoted server's "v1" (a replica serves a plain script's GET).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_serves_no_read_on_its_open_connections() {
    let redis = TestRedis::start();
    let config = CacheConfig {
        redis_url: format!("redis://127.0.0.1:{}", redis.port()),
        ..config(WaitReplicas::Off)
    };
    let cache = cache(&config);
    let key = CacheKey::user(Uuid::new_v4());
    assert_eq!(read(&cache, &key, "v1").await, "v1");
    assert_eq!(
        read(&cache, &key, "db").await,
        "v1",
        "a hit before the demotion"
    );
    // A replica of a primary that never answers: read-only at once, and it
    // keeps (and would serve) what it holds.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port().to_string();
    drop(dead);
    assert!(
        redis
            .command(&["REPLICAOF", "127.0.0.1", &dead_port])
            .is_some_and(|out| out.trim() == "OK")
    );
    assert_eq!(
        read(&cache, &key, "db").await,
        "db",
        "a read was answered by a server that is no longer a primary"
    );
}
