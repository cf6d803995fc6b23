//! What `WAIT` adds to a write: an invalidation applied against a primary
//! with one replica on loopback, `HUDDLE_REDIS_WAIT_REPLICAS` off vs `auto`,
//! in interleaved rounds (one round's CPU swings on a shared machine).
//! Bounded: 3 rounds of 2,000 applies each way, on private servers.
//!
//!   cargo run --release -p cache-core --example wait_cost

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, WaitReplicas};
use huddle_testkit::TestRedis;
use uuid::Uuid;

const ROUNDS: usize = 3;
const APPLIES: usize = 2_000;

fn cache(url: String, wait: WaitReplicas) -> Cache {
    let config = CacheConfig {
        redis_url: url,
        prefix: format!("huddle:bench-{}:", Uuid::new_v4().simple()),
        wait_replicas: wait,
        // A shared machine stalls now and then; a timeout is not what we
        // measure here.
        op_timeout: Duration::from_secs(1),
        ..CacheConfig::default()
    };
    Cache::new(
        &config,
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

async fn round(cache: &Cache, samples: &mut Vec<Duration>) {
    for _ in 0..APPLIES {
        let user = Uuid::new_v4();
        let key = CacheKey::user(user);
        // A cached value to delete, as a real write finds.
        let _ = cache
            .get_or_load(&key, key.ttl(), &[], || async {
                Ok::<_, std::convert::Infallible>(Some("v1".to_owned()))
            })
            .await;
        let write = Invalidation::user_profile_update(user, "a@example.com", "b@example.com");
        let started = Instant::now();
        cache.invalidate(&write).await.unwrap();
        samples.push(started.elapsed());
    }
}

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q) as usize]
}

#[tokio::main]
async fn main() {
    let primary = TestRedis::start();
    let replica = TestRedis::replica_of(primary.port());
    let off = cache(primary.url(), WaitReplicas::Off);
    let on = cache(primary.url(), WaitReplicas::Auto);
    let (mut off_samples, mut on_samples) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        round(&off, &mut off_samples).await;
        round(&on, &mut on_samples).await;
    }
    let acked = replica.info("master_link_status").unwrap_or_default();
    println!(
        "replica link: {acked}; {} applies each way",
        ROUNDS * APPLIES
    );
    for (name, samples) in [
        ("WAIT off ", &mut off_samples),
        ("WAIT auto", &mut on_samples),
    ] {
        println!(
            "{name}: invalidate p50 {:?}  p99 {:?}",
            quantile(samples, 0.5),
            quantile(samples, 0.99)
        );
    }
    let added = quantile(&mut on_samples, 0.5).saturating_sub(quantile(&mut off_samples, 0.5));
    println!("added to a write's p50: {added:?} (goal: at most 1 ms)");
}
