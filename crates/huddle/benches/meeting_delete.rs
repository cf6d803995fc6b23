//! `make bench`: deleting a meeting whose keys are cached costs the same
//! whether Redis holds a thousand or a million unrelated keys, because the
//! keys of a meeting are found through the rule table and tag indexes, never
//! by scanning the keyspace (SPEC §5).
//!
//! For each keyspace size it creates meetings with participants, warms every
//! key a delete affects, and times (a) `DELETE /api/meetings/{id}` end to end
//! (gateway, meeting-service transaction, outbox, Redis) and (b) the Redis
//! part alone (`Cache::invalidate` of the meeting-delete rule). It then checks
//! that no key of the deleted meeting survived.
//!
//! Redis: a private `redis-server` on 127.0.0.1 started for the run (so the
//! million keys never slow down anyone else's tests), or
//! `HUDDLE_BENCH_REDIS_URL` if set — which must be a loopback address. The
//! unrelated keys live under a throwaway prefix and are deleted afterwards.
//!
//! Then it measures a profile update of a user shown by 10,000 cached
//! values (which hold the user's id, as meeting values do their host's):
//! `PATCH /api/users/{id}` end to end. It deletes user-service's keys only,
//! so its cost does not grow with them; the bench checks they all survive.
//!
//! Not a test: `cargo test` runs this binary without `--bench`, and it then
//! only says how to run it.

// A benchmark binary may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use cache_core::{CacheKey, Invalidation};
use huddle_testapp::{TestApp, TestOptions};
use huddle_testkit::TestRedis;
use serde_json::json;
use uuid::Uuid;

/// Meetings deleted (and measured) per keyspace size.
const ROUNDS: usize = 30;
/// Meetings deleted first at each size, not measured (warm pools, JIT-free
/// but cold caches in Postgres).
const WARMUP: usize = 3;
const GUESTS: usize = 3;
/// SETs per pipelined round trip while filling the keyspace.
const FILL_BATCH: usize = 10_000;
/// Cached values showing the user whose profile is updated.
const EMBEDDING: usize = 10_000;
const PROFILE_ROUNDS: usize = 10;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("meeting_delete is a benchmark: run it with `make bench`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let (redis_url, _private) = match std::env::var("HUDDLE_BENCH_REDIS_URL") {
        Ok(url) => {
            assert_loopback(&url);
            (url, None)
        }
        Err(_) => {
            let redis = TestRedis::start();
            (redis.url(), Some(redis))
        }
    };
    let app = TestApp::spawn_with(TestOptions {
        redis_url: Some(redis_url.clone()),
        ..TestOptions::default()
    })
    .await;
    let mut raw = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let junk_prefix = format!("bench-junk-{}:", Uuid::new_v4().simple());

    let (host_id, host) = app.user("Bench Host").await;
    let mut guests = Vec::new();
    for i in 0..GUESTS {
        guests.push(app.user(&format!("Bench Guest {i}")).await);
    }

    println!(
        "meeting delete vs. unrelated keys in Redis ({ROUNDS} deletes per size, median / p90 / max)"
    );
    let mut filled = 0;
    let mut medians = Vec::new();
    for target in [1_000, 1_000_000] {
        let started = Instant::now();
        fill(&mut raw, &junk_prefix, filled, target).await;
        filled = target;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
        println!(
            "\n{target} unrelated keys (DBSIZE {dbsize}, filled in {:.1} s)",
            started.elapsed().as_secs_f64()
        );

        let mut http = Vec::new();
        let mut redis_only = Vec::new();
        let mut deleted_keys = Vec::new();
        for round in 0..WARMUP + ROUNDS {
            let meeting = Meeting::create(&app, &host, &guests).await;
            meeting.warm(&app, &host_id, &host, &guests).await;
            let invalidation = meeting.invalidation(&guests);
            let t = Instant::now();
            let deleted = app.cache.invalidate(&invalidation).await.unwrap();
            let redis_time = t.elapsed();

            meeting.warm(&app, &host_id, &host, &guests).await;
            meeting.assert_cached(&app).await;
            let t = Instant::now();
            let resp = app
                .delete(&format!("/api/meetings/{}", meeting.id), &host)
                .await;
            let http_time = t.elapsed();
            assert_eq!(resp.status.as_u16(), 200, "{:?}", resp.body);
            meeting.assert_gone(&app).await;
            if round >= WARMUP {
                http.push(http_time);
                redis_only.push(redis_time);
                deleted_keys.push(deleted);
            }
        }
        let http = Stats::of(http);
        let redis_only = Stats::of(redis_only);
        println!(
            "  DELETE /api/meetings/{{id}}, end to end: {}",
            http.render()
        );
        println!(
            "  Redis invalidation alone:              {}  ({} keys deleted each)",
            redis_only.render(),
            deleted_keys.iter().max().unwrap_or(&0)
        );
        medians.push((target, http.median, redis_only.median));
    }

    if let [(_, small_http, small_redis), (_, big_http, big_redis)] = medians[..] {
        println!(
            "\nmedian ratio, 1,000,000 vs 1,000 unrelated keys: end to end {:.2}x, Redis alone {:.2}x",
            big_http.as_secs_f64() / small_http.as_secs_f64(),
            big_redis.as_secs_f64() / small_redis.as_secs_f64()
        );
    }

    profile_update(&app, &mut raw).await;

    let started = Instant::now();
    clean(&mut raw, &junk_prefix, filled).await;
    let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    println!(
        "unrelated keys deleted in {:.1} s (DBSIZE now {dbsize})",
        started.elapsed().as_secs_f64()
    );
}

/// `PATCH /api/users/{id}` of a user shown by [`EMBEDDING`] cached values.
async fn profile_update(app: &TestApp, raw: &mut redis::aio::MultiplexedConnection) {
    let (user_id, token) = app.user("Shown Everywhere").await;
    println!(
        "\nprofile update of a user shown by {EMBEDDING} cached values \
         ({PROFILE_ROUNDS} updates, median / p90 / max)"
    );
    let mut answered = Vec::new();
    for round in 0..PROFILE_ROUNDS {
        let keys: Vec<CacheKey> = (0..EMBEDDING)
            .map(|_| CacheKey::meeting(Uuid::new_v4()))
            .collect();
        for chunk in keys.chunks(500) {
            let fills = chunk.iter().map(|key| {
                app.cache.get_or_load(key, key.ttl(), &[], || async {
                    Ok::<_, Infallible>(Some(json!({"host": user_id})))
                })
            });
            for filled in futures::future::join_all(fills).await {
                filled.unwrap();
            }
        }
        let t = Instant::now();
        let resp = app
            .patch(
                &format!("/api/users/{user_id}"),
                &token,
                json!({"name": format!("Renamed {round}")}),
            )
            .await;
        answered.push(t.elapsed());
        assert_eq!(resp.status.as_u16(), 200, "{:?}", resp.body);
        let names: Vec<String> = keys.iter().map(|k| app.cache.redis_key(k.path())).collect();
        let left: usize = redis::cmd("EXISTS")
            .arg(&names)
            .query_async(&mut *raw)
            .await
            .unwrap();
        assert_eq!(left, EMBEDDING, "a rename deleted values that hold ids");
    }
    println!("  answered:            {}", Stats::of(answered).render());
}

fn assert_loopback(url: &str) {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1"),
        "HUDDLE_BENCH_REDIS_URL must point at a loopback Redis, not {host:?}"
    );
}

/// Adds unrelated keys `from..to` under `prefix`, pipelined.
async fn fill(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let end = (i + FILL_BATCH).min(to);
        let mut pipe = redis::pipe();
        for n in i..end {
            pipe.cmd("SET")
                .arg(format!("{prefix}{n}"))
                .arg("x")
                .ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
        i = end;
    }
}

/// Deletes the unrelated keys by name (no SCAN needed: we know them).
async fn clean(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, count: usize) {
    let mut i = 0;
    while i < count {
        let end = (i + FILL_BATCH).min(count);
        let keys: Vec<String> = (i..end).map(|n| format!("{prefix}{n}")).collect();
        let mut pipe = redis::pipe();
        for chunk in keys.chunks(1000) {
            pipe.cmd("UNLINK").arg(chunk).ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
        i = end;
    }
}

struct Meeting {
    id: String,
    code: String,
    host: Uuid,
}

impl Meeting {
    async fn create(app: &TestApp, host: &str, guests: &[(String, String)]) -> Self {
        let created = app.create_live_meeting(host, "Bench").await;
        let id = created["id"].as_str().unwrap().to_owned();
        let code = created["inviteCode"].as_str().unwrap().to_owned();
        for (_, token) in guests {
            app.join(token, &code).await;
        }
        Self {
            id,
            code,
            host: Uuid::parse_str(created["hostId"].as_str().unwrap()).unwrap(),
        }
    }

    /// Reads every route that caches a key the delete affects.
    async fn warm(&self, app: &TestApp, host_id: &str, host: &str, guests: &[(String, String)]) {
        let m = format!("/api/meetings/{}", self.id);
        let mut reads: Vec<(String, &str)> = vec![
            (m.clone(), host),
            (format!("{m}/participants"), host),
            (format!("{m}/participants/count"), host),
            ("/api/meetings/live".to_owned(), host),
            ("/api/meetings/scheduled".to_owned(), host),
            (format!("/api/users/{host_id}/meetings"), host),
            (format!("/api/users/{host_id}/stats"), host),
            (format!("/api/users/{host_id}/participations"), host),
        ];
        for (id, token) in guests {
            reads.push((format!("/api/users/{id}/participations"), token));
        }
        for (path, token) in reads {
            let resp = app.get(&path, token).await;
            assert_eq!(resp.status.as_u16(), 200, "{path}: {:?}", resp.body);
        }
        // An idempotent join warms the invite-code key.
        app.post("/api/meetings/join", host, json!({"inviteCode": self.code}))
            .await;
    }

    fn invalidation(&self, guests: &[(String, String)]) -> Invalidation {
        let mut participants = vec![self.host];
        participants.extend(guests.iter().map(|(id, _)| Uuid::parse_str(id).unwrap()));
        Invalidation::meeting_delete(
            Uuid::parse_str(&self.id).unwrap(),
            self.host,
            &self.code,
            &participants,
        )
    }

    fn key_paths(&self) -> Vec<String> {
        let id = Uuid::parse_str(&self.id).unwrap();
        vec![
            CacheKey::meeting(id).path().to_owned(),
            CacheKey::meeting_participants(id).path().to_owned(),
            CacheKey::meeting_participant_count(id).path().to_owned(),
            CacheKey::meeting_by_invite_code(&self.code)
                .path()
                .to_owned(),
        ]
    }

    async fn assert_cached(&self, app: &TestApp) {
        app.assert_cached(&self.key_paths()).await;
    }

    async fn assert_gone(&self, app: &TestApp) {
        for path in self.key_paths() {
            assert!(
                app.cache.inspect(&path).await.unwrap().is_none(),
                "{path} survived the delete"
            );
        }
    }
}

struct Stats {
    median: Duration,
    p90: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p90: at(0.9),
            max: at(1.0),
        }
    }

    fn render(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{:7.3} ms / {:7.3} ms / {:7.3} ms",
            ms(self.median),
            ms(self.p90),
            ms(self.max)
        )
    }
}
