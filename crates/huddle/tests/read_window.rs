//! The gateway's read coalescing from outside: concurrent hot reads share
//! backend calls, and still no read on any replica is older than a write
//! acknowledged on another, with no write fence
//! (`crates/gateway/src/coalesce.rs`).
//!
//! Readers keep a call for the key in flight on replica B nearly all the
//! time, so a read right after a write on A arrives while one runs: the
//! rule that it never takes that call's answer is what keeps it fresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use common::TestApp;
use reqwest::StatusCode;
use serde_json::json;

const CHECKS: usize = 25;

/// `count` of the gateway's coalescing lookups with this route and result.
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

/// Readers that keep a call for `path` running on `app` until the guard drops.
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

/// Many concurrent callers of one hot key: far fewer backend calls than
/// requests (they share the call that starts after each arrived). Seen to
/// fail with coalescing off (`no_coalescing: true`: no request joined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hot_reads_share_backend_calls() {
    let app = Arc::new(TestApp::spawn().await);
    let (id, token) = app.user("Ada").await;
    let path = format!("/api/users/{id}");
    let (callers, each) = (32, 20);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (app, path, token) = (app.clone(), path.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    let resp = app.get(&path, &token).await;
                    assert_eq!(resp.status, StatusCode::OK);
                    assert_eq!(resp.body["data"]["name"], "Ada");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (miss, joined) = (
        lookups(&app, "/api/users/{id}", "miss").await,
        lookups(&app, "/api/users/{id}", "joined").await,
    );
    assert_eq!(miss + joined, f64::from(callers * each));
    assert!(
        miss * 3.0 < joined,
        "{miss} backend calls for {joined} shared answers"
    );
    // Another caller sees no email: calls are shared per rendering.
    let (_, other) = app.user("Grace").await;
    let resp = app.get(&path, &other).await;
    assert!(resp.body["data"].get("email").is_none(), "{:?}", resp.body);
    assert!(app.get(&path, &token).await.body["data"]["email"].is_string());
}

/// A deployment that still sets the read window's settings (removed; even
/// a value the old range refused) starts: nothing reads them.
#[test]
fn the_removed_window_settings_do_not_stop_a_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["token", "--admin"])
        .env("HUDDLE_ENV", "dev")
        .env("HUDDLE_READ_WINDOW_MS", "5000")
        .env("HUDDLE_READ_FENCE_MS", "nonsense")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A profile update acknowledged on replica A is what replica B answers at
/// once, while readers keep B's calls for the user running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_acknowledged_on_one_gateway_is_read_at_once_on_the_other() {
    let a = TestApp::spawn().await;
    let b = Arc::new(a.replica().await);
    let (id, token) = a.user("Name 0").await;
    let path = format!("/api/users/{id}");
    let _readers = Readers::start(&b, path.clone(), &token, 4);
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
        lookups(&b, "/api/users/{id}", "joined").await > 0.0,
        "the readers shared B's calls"
    );
}

/// A join acknowledged on A shows in the meeting's participant count on B,
/// and in the live list, both kept in flight on B by readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_acknowledged_on_one_gateway_is_counted_at_once_on_the_other() {
    let a = TestApp::spawn().await;
    let b = Arc::new(a.replica().await);
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
