//! The cache client against real Redis: one suite, run against a single
//! server (`HUDDLE_REDIS_URL`) and against the local 3-master Redis Cluster
//! `make test` starts (`HUDDLE_TEST_REDIS_CLUSTER_NODES`). Each test uses its
//! own key prefix, so tests run in parallel and never see each other's keys.
//! Tests that stop or pause Redis use a private server (`faults.rs`).

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, KeyName, Tag, Ttl};
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
}

type Infallible = std::convert::Infallible;

/// A write whose rule deletes by `tag:user:{id}`. Since meeting values
/// stopped embedding users no SPEC row does, but the tag machinery is the
/// same for every entity, and these tests pin it.
fn user_tagged_update(user: Uuid, old: &str, new: &str) -> Invalidation {
    let mut invalidation = Invalidation::user_profile_update(user, old, new);
    invalidation.tags.insert(Tag::user(user));
    invalidation
}

fn single() -> CacheConfig {
    CacheConfig {
        redis_url: std::env::var("HUDDLE_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        ..base()
    }
}

fn cluster() -> CacheConfig {
    CacheConfig {
        cluster_nodes: huddle_testkit::cluster_nodes(),
        ..base()
    }
}

fn base() -> CacheConfig {
    CacheConfig {
        prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
        // Generous for a loaded 2-core machine; fault tests set their own.
        op_timeout: Duration::from_millis(500),
        // The cluster's replicas acknowledge every DEL (WAIT); a loaded
        // machine can delay one past the 100 ms default.
        wait_timeout: Duration::from_secs(1),
        ..CacheConfig::default()
    }
}

/// A second "process": same Redis and prefix, its own pool, flights and
/// breaker — replicas share Redis, not memory.
fn instance(config: &CacheConfig) -> Cache {
    Cache::new(
        config,
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

fn profile(name: &str) -> Option<Profile> {
    Some(Profile {
        name: name.to_owned(),
    })
}

async fn load_counting(
    calls: &AtomicUsize,
    value: Option<Profile>,
) -> Result<Option<Profile>, Infallible> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

async fn fill(cache: &Cache, key: &CacheKey, tags: &[Tag], name: &str) {
    cache
        .get_or_load(key, key.ttl(), tags, || async {
            Ok::<_, Infallible>(profile(name))
        })
        .await
        .unwrap();
}

/// Polls `done` until it holds; fails the test after 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs each named `async fn(CacheConfig)` against both backends.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod single_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::single()).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::cluster()).await;
                }
            )*
        }
    };
}

suite!(
    second_read_is_a_hit_and_skips_the_loader,
    not_found_is_cached_as_a_short_lived_marker,
    fifty_concurrent_cold_reads_run_the_loader_once,
    concurrent_misses_across_instances_run_the_loader_once,
    a_fill_that_started_before_an_invalidation_never_lands,
    a_fill_racing_a_tag_invalidation_never_lands,
    a_waiter_arriving_after_a_write_never_gets_the_older_read,
    a_waiter_loads_for_itself_when_the_filler_is_gone,
    a_failed_load_is_not_cached,
    invalidation_deletes_listed_keys_and_tagged_values,
    invalidation_spanning_many_slots_succeeds,
    invalidation_also_clears_not_found_markers,
    batch_reads_use_one_load_for_all_misses,
    scan_finds_keys_by_pattern_under_the_prefix_only,
    reads_survive_a_server_that_forgot_the_scripts,
    no_stale_read_after_an_invalidation_under_concurrent_refills,
    a_second_process_waits_on_the_lease_instead_of_loading,
    invalidations_reach_the_keys_of_previous_prefixes,
    with_reads_off_every_read_loads_and_nothing_is_stored,
    the_ttl_is_chosen_from_the_loaded_value,
);

async fn second_read_is_a_hit_and_skips_the_loader(config: CacheConfig) {
    let cache = instance(&config);
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

async fn not_found_is_cached_as_a_short_lived_marker(config: CacheConfig) {
    let cache = instance(&config);
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

/// In-process single flight, pinned apart from the lease: the 49 callers
/// that arrive while the leader loads wait on its flight, not on Redis.
///
/// Seen to fail with the mechanism off: with `Cache::join` always making
/// the caller a leader (no in-process flights), the loader still ran once —
/// the lease alone — but 49 callers polled Redis for the fill
/// (`lease_waits` 49, `coalesced` 0).
/// `reads: false` (`HUDDLE_CACHE_READS=false`, the bench's uncached
/// column): every read runs its loader, concurrent ones too, and nothing
/// is written to Redis.
///
/// Seen to fail with the flag left out of `reads_held`: one load, stored;
/// and with reads off but through the flight table: 1 load of 10 on the
/// cluster (callers that join before the leader's load starts share it).
async fn with_reads_off_every_read_loads_and_nothing_is_stored(config: CacheConfig) {
    let cache = instance(&CacheConfig {
        reads: false,
        ..config
    });
    let key = CacheKey::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let reads: Vec<_> = (0..10)
        .map(|_| {
            let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&key, key.ttl(), &[], || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Infallible>(profile("direct"))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap(), profile("direct"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(cache.inspect(key.path()).await.unwrap(), None);
}

async fn fifty_concurrent_cold_reads_run_the_loader_once(config: CacheConfig) {
    let cache = instance(&config);
    let key = CacheKey::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(50));
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
                    Ok::<_, Infallible>(profile("slow"))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), profile("slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.metrics().lease_waits(KeyName::User), 0);
    assert_eq!(cache.metrics().lookups(KeyName::User, "coalesced"), 49);
}

/// Fleet-wide single flight: 200 concurrent misses split over two instances
/// (separate pools and memory) run the loader once.
///
/// Seen to fail with the mechanism off: with `READ_OR_LEASE` reduced to a
/// plain GET (no lease) and an unconditional fill, each instance's leader
/// loaded: 2 loads.
async fn concurrent_misses_across_instances_run_the_loader_once(config: CacheConfig) {
    let instances = [instance(&config), instance(&config)];
    let key = CacheKey::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (cache, key, calls, barrier) = (
            instances[i % 2].clone(),
            key.clone(),
            calls.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, Infallible>(profile("once"))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), profile("once"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let waits: u64 = instances
        .iter()
        .map(|c| c.metrics().lease_waits(KeyName::User))
        .sum();
    assert_eq!(waits, 1, "the other instance waited on the lease");
}

/// No stale set: reader misses and reads the old row; the writer commits and
/// invalidates; the reader's fill must not land.
///
/// Seen to fail with the mechanism off: with `FILL_IF_LEASED` replaced by an
/// unconditional SET, the next read returned "old" (stale until TTL).
async fn a_fill_that_started_before_an_invalidation_never_lands(config: CacheConfig) {
    let cache = instance(&config);
    let writer = instance(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    let row = Arc::new(std::sync::Mutex::new("old".to_owned()));
    let (read_done, write_done) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));

    let reader = {
        let (cache, key, row, read_done, write_done) = (
            cache.clone(),
            key.clone(),
            row.clone(),
            read_done.clone(),
            write_done.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    let seen = row.lock().unwrap().clone();
                    read_done.wait().await; // the read happened...
                    write_done.wait().await; // ...then the write committed and invalidated
                    Ok::<_, Infallible>(profile(&seen))
                })
                .await
                .unwrap()
        })
    };
    read_done.wait().await;
    *row.lock().unwrap() = "new".to_owned();
    writer
        .invalidate(&user_tagged_update(user, "a@x.io", "a@x.io"))
        .await
        .unwrap();
    write_done.wait().await;
    assert_eq!(
        reader.await.unwrap(),
        profile("old"),
        "the reader answers what it read"
    );

    let next = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            Ok::<_, Infallible>(profile(&row.lock().unwrap().clone()))
        })
        .await
        .unwrap();
    assert_eq!(next, profile("new"));
    assert_eq!(cache.metrics().fills_rejected(KeyName::User), 1);
}

/// The same race through a tag: a value embedding a user is loading when the
/// user's profile update invalidates the tag.
///
/// Seen to fail with the mechanism off: with the `tagger.tag` call moved
/// after the read (tags registered after loading, as the first version of
/// the client did), the invalidation's SMEMBERS missed the key and the next
/// read returned "Old Host".
async fn a_fill_racing_a_tag_invalidation_never_lands(config: CacheConfig) {
    let cache = instance(&config);
    let host = Uuid::new_v4();
    let key = CacheKey::meeting(Uuid::new_v4());
    let host_name = Arc::new(std::sync::Mutex::new("Old Host".to_owned()));
    let (read_done, write_done) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let reader = {
        let (cache, key, host_name, read_done, write_done) = (
            cache.clone(),
            key.clone(),
            host_name.clone(),
            read_done.clone(),
            write_done.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_load_tagged(&key, key.ttl(), async |tagger: cache_core::Tagger| {
                    // The host is only known from the meeting row.
                    tagger.tag(&[Tag::user(host)]).await;
                    let seen = host_name.lock().unwrap().clone();
                    read_done.wait().await;
                    write_done.wait().await;
                    Ok::<_, Infallible>(profile(&seen))
                })
                .await
                .unwrap()
        })
    };
    read_done.wait().await;
    *host_name.lock().unwrap() = "New Host".to_owned();
    cache
        .invalidate(&user_tagged_update(host, "h@x.io", "h@x.io"))
        .await
        .unwrap();
    write_done.wait().await;
    reader.await.unwrap();
    let next = cache
        .get_or_load(&key, key.ttl(), &[Tag::user(host)], || async {
            Ok::<_, Infallible>(profile(&host_name.lock().unwrap().clone()))
        })
        .await
        .unwrap();
    assert_eq!(next, profile("New Host"));
}

/// In-process single flight must not hand an in-flight load's result to a
/// caller that arrived after a write was acknowledged: that load may have
/// read the row before the write.
///
/// Seen to fail with the mechanism off: sharing every leader result with its
/// waiters (as the first version did) handed the late caller "old".
async fn a_waiter_arriving_after_a_write_never_gets_the_older_read(config: CacheConfig) {
    let cache = instance(&config);
    let user = Uuid::new_v4();
    let key = CacheKey::user(user);
    let row = Arc::new(std::sync::Mutex::new("old".to_owned()));
    let (read_done, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let leader = {
        let (cache, key, row, read_done, release) = (
            cache.clone(),
            key.clone(),
            row.clone(),
            read_done.clone(),
            release.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    let seen = row.lock().unwrap().clone();
                    read_done.wait().await;
                    release.wait().await;
                    Ok::<_, Infallible>(profile(&seen))
                })
                .await
                .unwrap()
        })
    };
    read_done.wait().await;
    // The write commits and is invalidated (acknowledged) ...
    *row.lock().unwrap() = "new".to_owned();
    cache
        .invalidate(&user_tagged_update(user, "a@x.io", "a@x.io"))
        .await
        .unwrap();
    // ... then a reader arrives and joins the leader's flight.
    let late = {
        let (cache, key, row) = (cache.clone(), key.clone(), row.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    Ok::<_, Infallible>(profile(&row.lock().unwrap().clone()))
                })
                .await
                .unwrap()
        })
    };
    eventually("the late reader joined the flight", || {
        cache.metrics().lookups(KeyName::User, "coalesced") == 1
    })
    .await;
    release.wait().await;
    assert_eq!(leader.await.unwrap(), profile("old"));
    assert_eq!(late.await.unwrap(), profile("new"));
}

/// A lease whose holder died: readers wait a bounded time, then answer from
/// the loader instead of failing.
async fn a_waiter_loads_for_itself_when_the_filler_is_gone(config: CacheConfig) {
    let config = CacheConfig {
        lease_wait: Duration::from_millis(100),
        ..config
    };
    let dead_filler = instance(&config);
    let reader = instance(&config);
    let key = CacheKey::user(Uuid::new_v4());
    // The dead filler takes the lease and never comes back.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (leased_tx, leased_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let (cache, key) = (dead_filler.clone(), key.clone());
        tokio::spawn(async move {
            let _ = cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    // The loader runs only once the lease is taken.
                    let _ = leased_tx.send(());
                    let _ = rx.await;
                    Ok::<_, Infallible>(profile("never"))
                })
                .await;
        })
    };
    leased_rx.await.unwrap();
    let got = reader
        .get_or_load(&key, key.ttl(), &[], || async {
            Ok::<_, Infallible>(profile("db"))
        })
        .await
        .unwrap();
    assert_eq!(got, profile("db"));
    assert_eq!(reader.metrics().lease_waits(KeyName::User), 1);
    holder.abort();
    drop(tx);
}

async fn a_failed_load_is_not_cached(config: CacheConfig) {
    let cache = instance(&config);
    let key = CacheKey::user(Uuid::new_v4());
    let got: Result<Option<Profile>, &str> = cache
        .get_or_load(&key, key.ttl(), &[], || async { Err("db down") })
        .await;
    assert_eq!(got, Err("db down"));
    // The lease was given back: nothing is cached and nobody must wait.
    assert!(cache.inspect(key.path()).await.unwrap().is_none());
    let got: Result<Option<Profile>, &str> = cache
        .get_or_load(&key, key.ttl(), &[], || async { Ok(profile("back")) })
        .await;
    assert_eq!(got, Ok(profile("back")));
}

async fn invalidation_deletes_listed_keys_and_tagged_values(config: CacheConfig) {
    let cache = instance(&config);
    let user = Uuid::new_v4();
    let user_key = CacheKey::user(user);
    let email_key = CacheKey::user_by_email("ann@x.io");
    // A value that embeds the user (a meeting showing its host).
    let meeting_key = CacheKey::meeting(Uuid::new_v4());
    let unrelated = CacheKey::meeting(Uuid::new_v4());
    fill(&cache, &user_key, &[], "x").await;
    fill(&cache, &email_key, &[], "x").await;
    fill(&cache, &meeting_key, &[Tag::user(user)], "x").await;
    fill(&cache, &unrelated, &[Tag::user(Uuid::new_v4())], "x").await;

    let deleted = cache
        .invalidate(&user_tagged_update(user, "ann@x.io", "new@x.io"))
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

/// A meeting delete touches keys in many hash slots; on a cluster they are
/// deleted per slot (no CROSSSLOT error).
///
/// Seen to fail with the mechanism off: with the cluster backend replaced by
/// a plain client on the first seed node, this test and 8 others of the
/// cluster suite failed on MOVED redirections. Removing only our per-slot
/// grouping of DEL did not fail it: redis-rs's cluster client also splits
/// multi-key DEL by slot, so the grouping is defence in depth.
async fn invalidation_spanning_many_slots_succeeds(config: CacheConfig) {
    let cache = instance(&config);
    let meeting = Uuid::new_v4();
    let host = Uuid::new_v4();
    let participants: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let mut keys = vec![
        CacheKey::meeting(meeting),
        CacheKey::meeting_participants(meeting),
        CacheKey::user_meetings(host),
        CacheKey::live_meetings(),
    ];
    keys.extend(
        participants
            .iter()
            .map(|p| CacheKey::user_participations(*p)),
    );
    for key in &keys {
        fill(&cache, key, &[Tag::meeting(meeting)], "m").await;
    }
    let deleted = cache
        .invalidate(&Invalidation::meeting_delete(
            meeting,
            host,
            "code",
            &participants,
        ))
        .await
        .unwrap();
    assert_eq!(deleted, keys.len());
    for key in &keys {
        assert!(cache.inspect(key.path()).await.unwrap().is_none(), "{key}");
    }
}

async fn invalidation_also_clears_not_found_markers(config: CacheConfig) {
    let cache = instance(&config);
    let key = CacheKey::user_by_email("late@x.io");
    let got = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            Ok::<Option<Profile>, Infallible>(None)
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
            Ok::<_, Infallible>(profile("late"))
        })
        .await
        .unwrap();
    assert_eq!(got, profile("late"));
}

async fn batch_reads_use_one_load_for_all_misses(config: CacheConfig) {
    let cache = instance(&config);
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let keys: Vec<CacheKey> = ids.iter().map(|id| CacheKey::user(*id)).collect();
    // Warm one key so the batch has a hit and three misses.
    fill(&cache, &keys[0], &[], "warm").await;
    let batches = AtomicUsize::new(0);
    let load = |missing: Vec<usize>| {
        batches.fetch_add(1, Ordering::SeqCst);
        assert_eq!(missing, vec![1, 2, 3]);
        // Index 2 does not exist.
        async move {
            Ok::<_, Infallible>(
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

async fn scan_finds_keys_by_pattern_under_the_prefix_only(config: CacheConfig) {
    let cache = instance(&config);
    let other = instance(&CacheConfig {
        prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
        ..config
    });
    let key = CacheKey::user(Uuid::new_v4());
    fill(&cache, &key, &[], "s").await;
    fill(&other, &key, &[], "s").await;
    let found = cache.scan("user:*", 100).await.unwrap();
    assert_eq!(found, vec![cache.redis_key(key.path())]);
    assert_eq!(cache.flush_prefix().await.unwrap(), 1);
    assert!(other.inspect(key.path()).await.unwrap().is_some());
}

/// Every node forgets the scripts (as after a restart or failover): reads,
/// fills and batch reads still work — `EVALSHA` falls back to loading the
/// script, on a cluster on the node that owns the key.
///
/// Seen to fail with the mechanism off: with `read_or_lease_one` sending a
/// bare EVALSHA (no load on NOSCRIPT), both backends answered from the
/// loader and the second read was not a hit (`calls` 2).
async fn reads_survive_a_server_that_forgot_the_scripts(config: CacheConfig) {
    let cache = instance(&config);
    let nodes = if config.cluster_nodes.is_empty() {
        vec![config.redis_url.clone()]
    } else {
        config.cluster_nodes.clone()
    };
    let flush = async || {
        for node in &nodes {
            let client = redis::Client::open(node.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    };
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        flush().await;
        let got = cache
            .get_or_load(&key, key.ttl(), &[], || {
                load_counting(&calls, profile("kept"))
            })
            .await
            .unwrap();
        assert_eq!(got, profile("kept"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second read was a hit");
    flush().await;
    let got: Vec<Option<Profile>> = cache
        .get_many_or_load(
            &[key.clone(), CacheKey::user(Uuid::new_v4())],
            key.ttl(),
            |m| async move {
                assert_eq!(m, vec![1]);
                Ok::<_, Infallible>(vec![profile("other")])
            },
        )
        .await
        .unwrap();
    assert_eq!(got, vec![profile("kept"), profile("other")]);
    assert_eq!(cache.metrics().redis_errors(KeyName::User.as_str()), 0);
}

/// Stress: readers on two instances keep refilling a tagged key while a
/// writer bumps the "row" and invalidates the tag, 100 times. Once an
/// invalidation has returned, no read may answer an older version.
///
/// Seen to fail with the mechanism off: with the old invalidation
/// (SMEMBERS → DEL → SREM of the members read) a refill between DEL and
/// SREM left the key untagged, and reads then answered an older version
/// for the rest of the run.
async fn no_stale_read_after_an_invalidation_under_concurrent_refills(config: CacheConfig) {
    use std::sync::atomic::AtomicU64;
    let instances = [instance(&config), instance(&config)];
    let host = Uuid::new_v4();
    let key = CacheKey::live_meetings();
    let row = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let read = async |cache: &Cache, row: &AtomicU64| -> u64 {
        cache
            .get_or_load(&key, key.ttl(), &[Tag::user(host)], || async {
                Ok::<_, Infallible>(Some(row.load(Ordering::SeqCst)))
            })
            .await
            .unwrap()
            .unwrap()
    };
    let mut readers = Vec::new();
    for i in 0..8 {
        let (cache, row, stop, key) = (
            instances[i % 2].clone(),
            row.clone(),
            stop.clone(),
            key.clone(),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                cache
                    .get_or_load(&key, key.ttl(), &[Tag::user(host)], || async {
                        let seen = row.load(Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, Infallible>(Some(seen))
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    let mut stale = Vec::new();
    for _ in 0..100 {
        let version = row.fetch_add(1, Ordering::SeqCst) + 1;
        instances[0]
            .invalidate(&user_tagged_update(host, "h@x.io", "h@x.io"))
            .await
            .unwrap();
        let seen = read(&instances[1], &row).await;
        if seen < version {
            stale.push((version, seen));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        stale.is_empty(),
        "stale reads after invalidation: {stale:?}"
    );
}

/// The Redis lease, pinned apart from in-process flights: one caller in each
/// of two processes (no flight to share), the first loading slowly; the
/// second waits for its fill instead of loading.
///
/// Seen to fail with the mechanism off: with `READ_OR_LEASE` reduced to a
/// plain GET (no lease placeholder), the second process loaded too (2 loads,
/// `lease_waits` 0).
async fn a_second_process_waits_on_the_lease_instead_of_loading(config: CacheConfig) {
    let (first, second) = (instance(&config), instance(&config));
    let key = CacheKey::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let (cache, key, calls) = (first.clone(), key.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, key.ttl(), &[], || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = started_tx.send(());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(profile("first"))
                })
                .await
                .unwrap()
        })
    };
    started_rx.await.unwrap();
    let got = second
        .get_or_load(&key, key.ttl(), &[], || {
            load_counting(&calls, profile("second"))
        })
        .await
        .unwrap();
    assert_eq!(got, profile("first"));
    assert_eq!(leader.await.unwrap(), profile("first"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(second.metrics().lease_waits(KeyName::User), 1);
    assert_eq!(second.metrics().lookups(KeyName::User, "lease_wait_hit"), 1);
}

/// A rolling update from prefix v1 to v2: each version names the other as a
/// previous prefix, so a write made by either reaches the keys (listed and
/// tagged) that both read (issue 9, item 4).
///
/// Seen to fail with the mechanism off: with `CacheConfig::all_prefixes`
/// yielding only the process's own prefix, the write deleted 2 keys, not 4:
/// the other version's copies survived.
async fn invalidations_reach_the_keys_of_previous_prefixes(config: CacheConfig) {
    let v1_prefix = config.prefix.clone();
    let v2_prefix = format!("huddle:test-{}:", Uuid::new_v4().simple());
    let v1 = instance(&CacheConfig {
        previous_prefixes: vec![v2_prefix.clone()],
        ..config.clone()
    });
    let v2 = instance(&CacheConfig {
        prefix: v2_prefix,
        previous_prefixes: vec![v1_prefix],
        ..config
    });
    let user = Uuid::new_v4();
    let user_key = CacheKey::user(user);
    let hosted = CacheKey::meeting(Uuid::new_v4());
    for (writer, other) in [(&v1, &v2), (&v2, &v1)] {
        for cache in [&v1, &v2] {
            fill(cache, &user_key, &[], "old").await;
            fill(cache, &hosted, &[Tag::user(user)], "old").await;
        }
        let deleted = writer
            .invalidate(&user_tagged_update(user, "a@x.io", "a@x.io"))
            .await
            .unwrap();
        assert_eq!(deleted, 4, "both keys under both prefixes");
        for key in [&user_key, &hosted] {
            assert!(other.inspect(key.path()).await.unwrap().is_none(), "{key}");
            assert!(writer.inspect(key.path()).await.unwrap().is_none(), "{key}");
        }
    }
}

/// A value-dependent TTL (SPEC §4's recordings): the value loaded decides,
/// clamped to `longest`; a not-found result is still a 30 s marker.
///
/// Seen to fail with `encode` given `ttl.longest()` instead of
/// `ttl.of(value)`: "busy: 609375 ms" (the longest TTL, not 30 s).
async fn the_ttl_is_chosen_from_the_loaded_value(config: CacheConfig) {
    let cache = instance(&config);
    let ttl = || Ttl::ByValue {
        longest: Duration::from_secs(600),
        of: |p: &Profile| Duration::from_secs(if p.name == "busy" { 30 } else { 6000 }),
    };
    let pttl = async |key: &CacheKey| cache.inspect(key.path()).await.unwrap().unwrap().1;
    for (name, low, high) in [("busy", 26_000, 33_000), ("done", 530_000, 660_000)] {
        let key = CacheKey::meeting_recording(Uuid::new_v4());
        let got = cache
            .get_or_load(&key, ttl(), &[], || async {
                Ok::<_, Infallible>(profile(name))
            })
            .await
            .unwrap();
        assert_eq!(got, profile(name));
        let ms = pttl(&key).await;
        assert!((low..=high).contains(&ms), "{name}: {ms} ms");
    }
    let key = CacheKey::meeting_recording(Uuid::new_v4());
    let got = cache
        .get_or_load(&key, ttl(), &[], || async { Ok::<_, Infallible>(None) })
        .await
        .unwrap();
    assert_eq!(got, None);
    let ms = pttl(&key).await;
    assert!((20_000..=30_000).contains(&ms), "not-found marker: {ms} ms");
}
