//! The eviction check: correctness needs Redis never to evict a tag set
//! (ARCHITECTURE.md, "Eviction"), so the client reports each node's
//! `maxmemory` / `maxmemory-policy` for start-up logs and readiness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cache_core::{Cache, CacheConfig, CacheMetrics, EvictionCheck};
use huddle_testkit::TestRedis;

fn cache(config: CacheConfig) -> Cache {
    Cache::new(
        &CacheConfig {
            prefix: "huddle:test-eviction:".to_owned(),
            ..config
        },
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

fn set(redis: &TestRedis, name: &str, value: &str) {
    let out = redis.command(&["CONFIG", "SET", name, value]).unwrap();
    assert_eq!(out.trim(), "OK");
}

/// Seen to fail with the mechanism off: with `check_eviction` treating any
/// policy as safe, the `volatile-lru` case (the tempting one: "every key has
/// a TTL") was reported safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_redis_that_never_evicts_is_reported_safe() {
    let redis = TestRedis::start();
    let cache = cache(CacheConfig {
        redis_url: redis.url(),
        ..CacheConfig::default()
    });
    // No maxmemory: nothing is ever evicted, whatever the policy says.
    set(&redis, "maxmemory-policy", "allkeys-lru");
    assert!(cache.check_eviction().await.is_safe());
    set(&redis, "maxmemory", "100mb");
    for policy in [
        "allkeys-lru",
        "volatile-lru",
        "volatile-ttl",
        "allkeys-random",
    ] {
        set(&redis, "maxmemory-policy", policy);
        let check = cache.check_eviction().await;
        assert!(
            matches!(&check, EvictionCheck::Unsafe(t) if t.contains(policy)),
            "{check:?}"
        );
    }
    set(&redis, "maxmemory-policy", "noeviction");
    assert!(cache.check_eviction().await.is_safe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_without_config_get_is_reported_unknown() {
    let redis = TestRedis::start_with(&["--rename-command", "CONFIG", ""]);
    let cache = cache(CacheConfig {
        redis_url: redis.url(),
        ..CacheConfig::default()
    });
    let check = cache.check_eviction().await;
    assert!(matches!(check, EvictionCheck::Unknown(_)), "{check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_node_is_checked() {
    let cache = cache(CacheConfig {
        cluster_nodes: huddle_testkit::cluster_nodes(),
        ..CacheConfig::default()
    });
    assert!(cache.check_eviction().await.is_safe());
}
