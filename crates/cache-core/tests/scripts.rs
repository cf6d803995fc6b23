//! The Lua scripts go as `EVALSHA`, never as their full text, and survive a
//! server that forgot them (restart, `SCRIPT FLUSH`). A private server, so
//! its command statistics count this test's calls only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, KeyName};
use huddle_testkit::TestRedis;
use uuid::Uuid;

type Infallible = std::convert::Infallible;

fn calls(stats: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Seen to fail with the mechanism off: with the pipeline's NOSCRIPT retry
/// removed, the batch read after `SCRIPT FLUSH` answered the cached key from
/// the loader (`[Some(10), ..]`); with `read_or_lease_one` sending `EVAL` +
/// script text (as before the split), `cmdstat_eval` was non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_sent_by_sha_and_reloaded_when_the_server_forgot_them() {
    let redis = TestRedis::start();
    let cache = Cache::new(
        &CacheConfig {
            redis_url: redis.url(),
            prefix: "huddle:test-scripts:".to_owned(),
            op_timeout: Duration::from_millis(500),
            ..CacheConfig::default()
        },
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let keys: Vec<CacheKey> = (0..4).map(|_| CacheKey::user(Uuid::new_v4())).collect();
    let single = async |key: &CacheKey, value: usize| {
        // Each read starts on a server that no longer knows any script.
        redis.command(&["SCRIPT", "FLUSH"]).unwrap();
        cache
            .get_or_load(key, key.ttl(), &[], || async {
                Ok::<_, Infallible>(Some(value))
            })
            .await
            .unwrap()
    };
    assert_eq!(single(&keys[0], 0).await, Some(0));
    redis.command(&["SCRIPT", "FLUSH"]).unwrap();
    let got: Vec<Option<usize>> = cache
        .get_many_or_load(&keys[..3], Duration::from_secs(60), |missing| async move {
            Ok::<_, Infallible>(missing.iter().map(|i| Some(*i + 10)).collect())
        })
        .await
        .unwrap();
    assert_eq!(got, vec![Some(0), Some(11), Some(12)]);
    assert_eq!(single(&keys[3], 3).await, Some(3));
    assert_eq!(cache.metrics().redis_errors(KeyName::User.as_str()), 0);
    // Everything was cached despite the flushes: no loader call now.
    redis.command(&["SCRIPT", "FLUSH"]).unwrap();
    let got: Vec<Option<usize>> = cache
        .get_many_or_load(&keys, Duration::from_secs(60), |_| async {
            Err::<Vec<Option<usize>>, &str>("no loader call expected")
        })
        .await
        .unwrap();
    assert_eq!(got, vec![Some(0), Some(11), Some(12), Some(3)]);

    let stats = redis.command(&["INFO", "commandstats"]).unwrap();
    assert_eq!(calls(&stats, "eval"), 0, "{stats}");
    assert!(calls(&stats, "evalsha") >= 6, "{stats}");
}
