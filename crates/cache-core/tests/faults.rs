//! Fail-open: Redis stopped, paused or unreachable never fails a read, and a
//! circuit breaker stops calling it until it recovers. Each test owns a
//! private `redis-server`, so stopping it disturbs no other test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use cache_core::{BreakerState, Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, KeyName};
use huddle_testkit::TestRedis;
use uuid::Uuid;

type Infallible = std::convert::Infallible;

fn cache(redis_url: String) -> Cache {
    cache_in(redis_url, &prometheus::Registry::new())
}

fn cache_in(redis_url: String, registry: &prometheus::Registry) -> Cache {
    let config = CacheConfig {
        redis_url,
        prefix: "huddle:test-faults:".to_owned(),
        op_timeout: Duration::from_millis(100),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(300),
        ..CacheConfig::default()
    };
    Cache::new(&config, CacheMetrics::register(registry).unwrap()).unwrap()
}

/// `huddle_cache_breaker_state` as a scrape of `registry` shows it.
fn scraped_breaker_state(registry: &prometheus::Registry) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("huddle_cache_breaker_state "))
        .expect("the scrape shows huddle_cache_breaker_state")
        .parse()
        .unwrap()
}

/// The breaker gauge tells the truth on an idle process: open (1) while
/// the cooldown runs, half-open (2) once it is over although no call has
/// come to take the step, closed (0) after the probe succeeded.
///
/// Seen to fail with `Breaker::state` reading an open breaker as open
/// whatever the clock (what the gauge, set on transitions only, showed
/// before): the scrape after the cooldown read 1, "idle and past its
/// cooldown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_gauge_shows_half_open_on_an_idle_process() {
    let mut redis = TestRedis::start();
    let registry = prometheus::Registry::new();
    let cache = cache_in(redis.url(), &registry);
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    read(&cache, &key, &calls).await;
    assert_eq!(scraped_breaker_state(&registry), 0.0);

    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.breaker_state() != BreakerState::Open {
        assert!(Instant::now() < deadline, "the breaker never opened");
        read(&cache, &key, &calls).await;
    }
    assert_eq!(scraped_breaker_state(&registry), 1.0, "open");

    redis.restart();
    // No call at all: the process is idle. The cooldown is 300 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        scraped_breaker_state(&registry),
        2.0,
        "idle and past its cooldown"
    );
    assert_eq!(cache.breaker_state(), BreakerState::HalfOpen);

    read(&cache, &key, &calls).await;
    assert_eq!(scraped_breaker_state(&registry), 0.0, "the probe closed it");
}

async fn read(cache: &Cache, key: &CacheKey, calls: &AtomicUsize) -> Option<String> {
    cache
        .get_or_load(key, key.ttl(), &[], || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Some("from-db".to_owned()))
        })
        .await
        .unwrap()
}

/// Redis stopped mid-run: reads answer from the loader; after a few failures
/// the breaker opens and Redis is not called at all; once Redis is back the
/// breaker's probe closes it by itself and hits resume.
///
/// Seen to fail with the mechanism off: with `Breaker::allow` always true,
/// every one of the ten reads paid a Redis error (the `errors <= 3`
/// assertion failed) and nothing was ever rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_opens_the_breaker_and_recovery_closes_it() {
    let mut redis = TestRedis::start();
    let cache = cache(redis.url());
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    assert_eq!(read(&cache, &key, &calls).await.as_deref(), Some("from-db"));
    assert_eq!(read(&cache, &key, &calls).await.as_deref(), Some("from-db"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "second read was a hit");

    redis.stop();
    for _ in 0..10 {
        assert_eq!(read(&cache, &key, &calls).await.as_deref(), Some("from-db"));
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    let errors = cache.metrics().redis_errors(KeyName::User.as_str());
    assert!(
        errors <= 3,
        "breaker opened after the threshold, {errors} errors"
    );
    assert!(cache.metrics().breaker_rejections() >= 7);
    // Invalidations fail fast too (the outbox keeps them).
    assert!(
        cache
            .invalidate(&Invalidation::user_create("a@b.c"))
            .await
            .is_err()
    );

    redis.restart();
    // Reads go on; once the cooldown is over, one of them is the probe (a
    // miss on the empty Redis) and closes the breaker by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.breaker_state() != BreakerState::Closed {
        assert!(Instant::now() < deadline, "the breaker never closed");
        read(&cache, &key, &calls).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = calls.load(Ordering::SeqCst);
    read(&cache, &key, &calls).await;
    assert_eq!(calls.load(Ordering::SeqCst), before, "hits resumed");
}

/// A paused Redis (alive but silent) costs a read at most the call timeout
/// (100 ms, plus scheduling slack), not the length of the pause.
///
/// Seen to fail with the mechanism off: with `Cache::call`'s bound raised
/// from `op_timeout` to 1000 × it, the read took 604 ms (the pool's own
/// checkout bounds) against the 250 ms allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_at_most_the_timeout() {
    let redis = TestRedis::start();
    let cache = cache(redis.url());
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    read(&cache, &key, &calls).await; // warm the pool's connection
    let pause = Duration::from_secs(3);
    redis.pause(pause);
    let started = Instant::now();
    assert_eq!(read(&cache, &key, &calls).await.as_deref(), Some("from-db"));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "waited more than the timeout: {:?}",
        started.elapsed()
    );
    redis.unpause();
}

/// A silent Redis — the process stopped (SIGSTOP), its connections open and
/// unanswered — trips the breaker: after `breaker_threshold` (3) timed-out
/// calls of 100 ms, reads stop waiting on Redis at all. Ten reads cost about
/// three timeouts, not ten; once Redis answers again the breaker closes.
///
/// Seen to fail with the mechanism off: with `Breaker::allow` always true
/// every read waited out its timeout and nothing was rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_trips_the_breaker_and_reads_stop_waiting() {
    let redis = TestRedis::start();
    let cache = cache(redis.url());
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    read(&cache, &key, &calls).await; // warm the pool's connection
    redis.freeze();
    let started = Instant::now();
    for _ in 0..10 {
        let one = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(2), read(&cache, &key, &calls))
            .await
            .expect("a read waited on the silent Redis");
        assert_eq!(got.as_deref(), Some("from-db"));
        assert!(
            one.elapsed() < Duration::from_millis(250),
            "{:?}",
            one.elapsed()
        );
    }
    let total = started.elapsed();
    redis.thaw();
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert!(cache.metrics().breaker_rejections() >= 7);
    // 3 timeouts of 100 ms; 10 would be 1 s.
    assert!(
        total < Duration::from_millis(700),
        "ten reads took {total:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.breaker_state() != BreakerState::Closed {
        assert!(Instant::now() < deadline, "the breaker never closed");
        read(&cache, &key, &calls).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_degrades_to_the_loader() {
    // Nothing listens on port 1: every call fails fast.
    let cache = cache("redis://127.0.0.1:1".to_owned());
    let key = CacheKey::user(Uuid::new_v4());
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        assert_eq!(read(&cache, &key, &calls).await.as_deref(), Some("from-db"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(cache.metrics().redis_errors("user") >= 2);
}
