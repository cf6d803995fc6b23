//! The cache client against a real Redis (`HUDDLE_REDIS_URL`, default
//! 127.0.0.1:6379). Each test uses its own key prefix, so tests run in
//! parallel and never see each other's keys.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, KeyName, Tag};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
}

fn cache() -> Cache {
    let config = CacheConfig {
        redis_url: std::env::var("HUDDLE_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
        ..CacheConfig::default()
    };
    let metrics = CacheMetrics::register(&prometheus::Registry::new()).unwrap();
    Cache::new(&config, metrics).unwrap()
}

async fn load_counting(
    calls: &AtomicUsize,
    value: Option<Profile>,
) -> Result<Option<Profile>, std::convert::Infallible> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

fn profile(name: &str) -> Option<Profile> {
    Some(Profile {
        name: name.to_owned(),
    })
}

#[tokio::test]
async fn second_read_is_a_hit_and_skips_the_loader() {
    let cache = cache();
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let got = cache
            .get_or_load(&key, key.ttl(), &[], || {
                load_counting(&calls, profile("ann"))
            })
            .await
            .unwrap();
        assert_eq!(got, profile("ann"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.metrics().lookups(KeyName::User, "hit"), 1);
    assert_eq!(cache.metrics().lookups(KeyName::User, "miss"), 1);

    // Stored with the key's TTL, jittered by at most 10 %.
    let (raw, ttl_ms) = cache.inspect(key.path()).await.unwrap().unwrap();
    assert_eq!(raw, r#"{"name":"ann"}"#);
    assert!((540_000..=660_000).contains(&ttl_ms), "{ttl_ms}");
}

#[tokio::test]
async fn not_found_is_cached_as_a_short_lived_marker() {
    let cache = cache();
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let got = cache
            .get_or_load(&key, key.ttl(), &[], || load_counting(&calls, None))
            .await
            .unwrap();
        assert_eq!(got, None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.metrics().lookups(KeyName::User, "not_found_hit"), 2);
    let (raw, ttl_ms) = cache.inspect(key.path()).await.unwrap().unwrap();
    assert_eq!(raw, "<not-found marker>");
    assert!(ttl_ms <= 30_000 && ttl_ms > 20_000, "{ttl_ms}");
}

#[tokio::test]
async fn fifty_concurrent_cold_reads_run_the_loader_once() {
    let cache = cache();
    let key = CacheKey::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, key, calls, barrier) =
            (cache.clone(), key.clone(), calls.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Long enough that every reader arrives while loading.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::convert::Infallible>(profile("slow"))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), profile("slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_load_is_not_cached_and_waiters_load_for_themselves() {
    let cache = cache();
    let key = CacheKey::user(Uuid::new_v4());
    let got: Result<Option<Profile>, &str> = cache
        .get_or_load(&key, key.ttl(), &[], || async { Err("db down") })
        .await;
    assert_eq!(got, Err("db down"));
    assert!(cache.inspect(key.path()).await.unwrap().is_none());
    let got: Result<Option<Profile>, &str> = cache
        .get_or_load(&key, key.ttl(), &[], || async { Ok(profile("back")) })
        .await;
    assert_eq!(got, Ok(profile("back")));
}

#[tokio::test]
async fn invalidation_deletes_listed_keys_and_tagged_values() {
    let cache = cache();
    let user = Uuid::new_v4();
    let meeting = Uuid::new_v4();
    let user_key = CacheKey::user(user);
    let email_key = CacheKey::user_by_email("ann@x.io");
    // A value that embeds the user (a meeting showing its host).
    let meeting_key = CacheKey::meeting(meeting);
    let unrelated = CacheKey::meeting(Uuid::new_v4());
    let fill = |key: CacheKey, tags: Vec<Tag>| {
        let cache = cache.clone();
        async move {
            cache
                .get_or_load(&key, key.ttl(), &tags, || async {
                    Ok::<_, std::convert::Infallible>(profile("x"))
                })
                .await
                .unwrap();
        }
    };
    fill(user_key.clone(), vec![]).await;
    fill(email_key.clone(), vec![]).await;
    fill(meeting_key.clone(), vec![Tag::user(user)]).await;
    fill(unrelated.clone(), vec![Tag::user(Uuid::new_v4())]).await;

    let deleted = cache
        .invalidate(&Invalidation::user_profile_update(
            user, "ann@x.io", "new@x.io",
        ))
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    for gone in [&user_key, &email_key, &meeting_key] {
        assert!(
            cache.inspect(gone.path()).await.unwrap().is_none(),
            "{gone}"
        );
    }
    assert!(cache.inspect(unrelated.path()).await.unwrap().is_some());
    // The tag index no longer lists what it deleted.
    let index = cache.scan(&Tag::user(user).path(), 10).await.unwrap();
    assert!(index.is_empty(), "{index:?}");
}

#[tokio::test]
async fn invalidation_also_clears_not_found_markers() {
    let cache = cache();
    let key = CacheKey::user_by_email("late@x.io");
    let got = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            Ok::<Option<Profile>, std::convert::Infallible>(None)
        })
        .await
        .unwrap();
    assert_eq!(got, None);
    cache
        .invalidate(&Invalidation::user_create("late@x.io"))
        .await
        .unwrap();
    let got = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            Ok::<_, std::convert::Infallible>(profile("late"))
        })
        .await
        .unwrap();
    assert_eq!(got, profile("late"));
}

#[tokio::test]
async fn an_unreachable_redis_degrades_to_the_loader() {
    let config = CacheConfig {
        // Nothing listens on port 1: every call fails fast.
        redis_url: "redis://127.0.0.1:1".to_owned(),
        prefix: "huddle:test-down:".to_owned(),
        op_timeout: Duration::from_millis(50),
        ..CacheConfig::default()
    };
    let cache = Cache::new(
        &config,
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let got = cache
            .get_or_load(&key, key.ttl(), &[], || {
                load_counting(&calls, profile("db"))
            })
            .await
            .unwrap();
        assert_eq!(got, profile("db"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(cache.metrics().redis_errors("user") >= 2);
    assert!(
        cache
            .invalidate(&Invalidation::user_create("a@b.c"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn scan_finds_keys_by_pattern_under_the_prefix_only() {
    let cache = cache();
    let other = self::cache();
    let key = CacheKey::user(Uuid::new_v4());
    for c in [&cache, &other] {
        c.get_or_load(&key, key.ttl(), &[], || async {
            Ok::<_, std::convert::Infallible>(profile("s"))
        })
        .await
        .unwrap();
    }
    let found = cache.scan("user:*", 100).await.unwrap();
    assert_eq!(found, vec![cache.redis_key(key.path())]);
    assert_eq!(cache.flush_prefix().await.unwrap(), 1);
    assert!(other.inspect(key.path()).await.unwrap().is_some());
}

#[tokio::test]
async fn batch_reads_use_one_load_for_all_misses() {
    let cache = cache();
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let keys: Vec<CacheKey> = ids.iter().map(|id| CacheKey::user(*id)).collect();
    // Warm one key so the batch has a hit and three misses.
    cache
        .get_or_load(&keys[0], keys[0].ttl(), &[], || async {
            Ok::<_, std::convert::Infallible>(profile("warm"))
        })
        .await
        .unwrap();
    let batches = AtomicUsize::new(0);
    let load = |missing: Vec<usize>| {
        batches.fetch_add(1, Ordering::SeqCst);
        assert_eq!(missing, vec![1, 2, 3]);
        // Index 2 does not exist.
        async move {
            Ok::<_, std::convert::Infallible>(
                missing
                    .iter()
                    .map(|i| {
                        (*i != 2).then(|| Profile {
                            name: format!("p{i}"),
                        })
                    })
                    .collect(),
            )
        }
    };
    let got = cache
        .get_many_or_load(&keys, Duration::from_secs(60), load)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![profile("warm"), profile("p1"), None, profile("p3")]
    );
    assert_eq!(batches.load(Ordering::SeqCst), 1);

    // Everything, the missing one included, is now answered from Redis.
    let got: Vec<Option<Profile>> = cache
        .get_many_or_load(&keys, Duration::from_secs(60), |_| async {
            Err::<Vec<Option<Profile>>, &str>("no loader call expected")
        })
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![profile("warm"), profile("p1"), None, profile("p3")]
    );
}
