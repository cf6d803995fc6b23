//! The gateway's read window from outside: hot reads are answered by the
//! gateway, and still no read on any replica is older than a write
//! acknowledged on another (`crates/gateway/src/window.rs`).
//!
//! The windows here are long (60 ms, production's is 2 ms) so that, with
//! readers keeping a replica's window full, a read right after a write on
//! the other replica lands inside a window nearly every time: with the
//! write fence taken out (`window::fence` not waiting), both cross-replica
//! tests below failed, seeing the old value (seen failing). At
//! production's 2 ms a debug build's reads are too slow to land inside a
//! window often enough for `stress.rs` to notice the same mutation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{TestApp, TestOptions};
use reqwest::StatusCode;
use serde_json::json;

const WINDOW: Duration = Duration::from_millis(60);
const CHECKS: usize = 25;

fn options() -> TestOptions {
    TestOptions {
        read_window: Some(WINDOW),
        ..TestOptions::default()
    }
}

/// `count` of the gateway's window lookups with this route and result.
async fn lookups(app: &TestApp, route: &str, result: &str) -> f64 {
    app.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("huddle_gateway_window_lookups_total{"))
        .filter(|l| l.contains(&format!("route=\"{route}\"")))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Readers that keep `path` in `app`'s window until the guard drops.
struct Readers {
    stop: Arc<AtomicBool>,
}

impl Readers {
    fn start(app: &Arc<TestApp>, path: String, token: &str, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..count {
            let (app, stop, path, token) =
                (app.clone(), stop.clone(), path.clone(), token.to_owned());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let resp = app.get(&path, &token).await;
                    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
                }
            });
        }
        Self { stop }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Within a window, repeated reads are answered by the gateway: the
/// service sees one read, whatever the number of callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reads_are_answered_by_the_gateway_within_the_window() {
    let app = TestApp::spawn_with(TestOptions {
        read_window: Some(Duration::from_secs(2)),
        ..TestOptions::default()
    })
    .await;
    let (id, token) = app.user("Ada").await;
    let path = format!("/api/users/{id}");
    let service_reads = "huddle_cache_lookups_total{key=\"user\",result=\"miss\"}";
    let before = app.metric(service_reads).await;
    for _ in 0..20 {
        let resp = app.get(&path, &token).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body["data"]["name"], "Ada");
    }
    assert_eq!(lookups(&app, "/api/users/{id}", "miss").await, 1.0);
    assert_eq!(lookups(&app, "/api/users/{id}", "hit").await, 19.0);
    assert_eq!(
        app.metric(service_reads).await - before,
        1.0,
        "one read reached the service"
    );
    // Another caller sees no email: answers are kept per rendering.
    let (_, other) = app.user("Grace").await;
    let resp = app.get(&path, &other).await;
    assert!(resp.body["data"].get("email").is_none(), "{:?}", resp.body);
    assert!(app.get(&path, &token).await.body["data"]["email"].is_string());
}

/// A profile update acknowledged on replica A is what replica B answers at
/// once, while readers keep B's window full of the old name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_acknowledged_on_one_gateway_is_read_at_once_on_the_other() {
    let a = TestApp::spawn_with(options()).await;
    let b = Arc::new(a.replica_with(options()).await);
    let (id, token) = a.user("Name 0").await;
    let path = format!("/api/users/{id}");
    let _readers = Readers::start(&b, path.clone(), &token, 4);
    tokio::time::sleep(WINDOW).await;
    for n in 1..=CHECKS {
        let name = format!("Name {n}");
        let resp = a.patch(&path, &token, json!({ "name": name })).await;
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
        let seen = b.get(&path, &token).await;
        assert_eq!(
            seen.body["data"]["name"],
            name.as_str(),
            "check {n}: {:?}",
            seen.body
        );
    }
    assert!(
        lookups(&b, "/api/users/{id}", "hit").await > 0.0,
        "the readers were answered from B's window"
    );
}

/// A join acknowledged on A shows in the meeting's participant count on B,
/// and in the live list, both kept in B's window by readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_acknowledged_on_one_gateway_is_counted_at_once_on_the_other() {
    let a = TestApp::spawn_with(options()).await;
    let b = Arc::new(a.replica_with(options()).await);
    let (_, host) = a.user("Host").await;
    let meeting = a.create_live_meeting(&host, "Window").await;
    let (id, code) = (
        meeting["id"].as_str().unwrap().to_owned(),
        meeting["inviteCode"].as_str().unwrap().to_owned(),
    );
    let path = format!("/api/meetings/{id}");
    // The host of a meeting created LIVE is its first participant.
    let base = a.get(&path, &host).await.body["data"]["_count"]["participants"]
        .as_u64()
        .unwrap();
    let _details = Readers::start(&b, path.clone(), &host, 2);
    let _live = Readers::start(&b, "/api/meetings/live".to_owned(), &host, 2);
    tokio::time::sleep(WINDOW).await;
    for n in 1..=CHECKS as u64 {
        let (_, guest) = a.user(&format!("Guest {n}")).await;
        a.join(&guest, &code).await;
        let details = b.get(&path, &host).await;
        assert_eq!(
            details.body["data"]["_count"]["participants"],
            base + n,
            "check {n}: {:?}",
            details.body
        );
        let live = b.get("/api/meetings/live", &host).await;
        let entry = live.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(
            entry["_count"]["participants"],
            base + n,
            "check {n}: {entry}"
        );
    }
}
