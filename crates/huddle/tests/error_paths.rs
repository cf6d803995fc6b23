//! What is answered when one dependency of one service fails, and that the
//! system recovers when it returns. Each fault is a proxy the test cuts
//! (`TestOptions::proxies`) or a private Redis, never the shared servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, TestOptions, assert_error, grpc_health};
use huddle_testkit::eventually;
use reqwest::StatusCode;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;

async fn app_with_proxies() -> TestApp {
    TestApp::spawn_with(TestOptions {
        proxies: true,
        user_call_timeout: Some(Duration::from_millis(500)),
        ..TestOptions::default()
    })
    .await
}

/// user-service's Postgres goes away: a read that needs the database
/// answers 503 with the JSON envelope (never a 500 or a hang), a cached
/// read still answers, so the service stays SERVING (tests/postgres_failover.rs),
/// and both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_one_service_is_503_then_recovers() {
    let app = app_with_proxies().await;
    let proxies = app.proxies.as_ref().unwrap();
    let (id, token) = app.user("Cached").await;
    let me = format!("/api/users/{id}");
    assert_eq!(app.get(&me, &token).await.status, StatusCode::OK); // cached
    let (other, _) = app.user("Cold").await;

    proxies.user_db.set_up(false);
    let resp = app.get(&format!("/api/users/{other}"), &token).await;
    assert_error(&resp, 503, "UNAVAILABLE");
    assert_eq!(
        grpc_health(app.user_addr).await,
        Some(ServingStatus::Serving)
    );
    assert_eq!(
        app.get(&me, &token).await.status,
        StatusCode::OK,
        "a cached read needs no database"
    );

    proxies.user_db.set_up(true);
    let ready = eventually(Duration::from_secs(10), async || {
        grpc_health(app.user_addr).await == Some(ServingStatus::Serving)
    })
    .await;
    assert!(ready, "user-service did not report SERVING again");
    let recovered = eventually(Duration::from_secs(10), async || {
        app.get(&format!("/api/users/{other}"), &token).await.status == StatusCode::OK
    })
    .await;
    assert!(recovered);
}

/// user-service is unreachable while meeting-service needs a host's card:
/// the read answers 503 (never a meeting without its host), and what is
/// cached holds the host's id only, so the next read after recovery shows
/// the host, not a hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_service_down_behind_meeting_service() {
    let app = app_with_proxies().await;
    let proxies = app.proxies.as_ref().unwrap();
    let (host_id, host) = app.user("Host Name").await;
    let meeting = app.create_meeting(&host, "Needs a host card").await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let details = format!("/api/meetings/{id}");
    app.cache
        .invalidate(&cache_core::Invalidation::meeting_update(
            id.parse().unwrap(),
            host_id.parse().unwrap(),
            &[],
            false,
            &[],
        ))
        .await
        .unwrap();

    proxies.user_grpc.set_up(false);
    let resp = app.get(&details, &host).await;
    assert_error(&resp, 503, "UNAVAILABLE");
    if let Some((cached, _)) = app.cache.inspect(&format!("meeting:{id}")).await.unwrap() {
        assert!(!cached.contains("Host Name"), "a card was cached: {cached}");
    }

    proxies.user_grpc.set_up(true);
    let recovered = eventually(Duration::from_secs(10), async || {
        let resp = app.get(&details, &host).await;
        resp.status == StatusCode::OK && resp.body["data"]["host"]["name"] == "Host Name"
    })
    .await;
    assert!(recovered, "details did not recover with the host's name");
}

/// user-service hangs (accepts, never answers) while meeting-service needs a
/// host's card: the meeting service's own deadline (500 ms here) ends the
/// wait, well before the gateway's 5 s one, with a 503.
///
/// Seen to fail with the user call's deadline raised to 30 s: the gateway's
/// own timeout answered after 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_service_hung_behind_meeting_service() {
    let app = app_with_proxies().await;
    let proxies = app.proxies.as_ref().unwrap();
    let (host_id, host) = app.user("Host Name").await;
    let meeting = app.create_meeting(&host, "Waits for a card").await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    app.cache
        .invalidate(&cache_core::Invalidation::meeting_update(
            id.parse().unwrap(),
            host_id.parse().unwrap(),
            &[],
            false,
            &[],
        ))
        .await
        .unwrap();

    proxies.user_grpc.set_silent(true);
    let started = std::time::Instant::now();
    let resp = app.get(&format!("/api/meetings/{id}"), &host).await;
    let waited = started.elapsed();
    assert_error(&resp, 503, "UNAVAILABLE");
    assert!(
        waited < Duration::from_secs(4),
        "waited {waited:?}: the gateway's deadline, not the service's, ended it"
    );
    proxies.user_grpc.set_silent(false);
}

/// meeting-service is unreachable behind the gateway: meeting routes answer
/// 503 on their own while user routes keep answering, then recover.
///
/// Found a bug when first run: a connection reset during the HTTP/2
/// handshake reached the gateway as `Unknown` and was answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_service_down_behind_the_gateway() {
    let app = app_with_proxies().await;
    let proxies = app.proxies.as_ref().unwrap();
    let (id, token) = app.user("Still Here").await;

    proxies.meeting_grpc.set_up(false);
    let resp = app.get("/api/meetings/live", &token).await;
    assert_error(&resp, 503, "UNAVAILABLE");
    // The operator sees it from the caller's side too (issue 13 item 4).
    let unavailable = "huddle_grpc_client_requests_total{code=\"Unavailable\",\
                       method=\"ListLiveMeetings\",service=\"huddle.meeting.v1.MeetingService\"}";
    assert!(
        app.metric(unavailable).await >= 1.0,
        "{}",
        app.metrics().await
    );
    let resp = app
        .post(
            "/api/meetings",
            &token,
            json!({"title": "x", "status": "LIVE"}),
        )
        .await;
    assert_error(&resp, 503, "UNAVAILABLE");
    assert_eq!(
        app.get(&format!("/api/users/{id}"), &token).await.status,
        StatusCode::OK
    );

    proxies.meeting_grpc.set_up(true);
    let recovered = eventually(Duration::from_secs(10), async || {
        app.get("/api/meetings/live", &token).await.status == StatusCode::OK
    })
    .await;
    assert!(recovered);
    let ok = "huddle_grpc_client_requests_total{code=\"OK\",\
              method=\"ListLiveMeetings\",service=\"huddle.meeting.v1.MeetingService\"}";
    assert!(app.metric(ok).await >= 1.0);
}

/// Redis refuses writes while meeting-service updates a meeting: the
/// update is acknowledged, its invalidation waits in the outbox, and once
/// Redis accepts writes the relay applies it without any help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_for_the_meeting_service() {
    let redis = huddle_testkit::TestRedis::start();
    let app = TestApp::spawn_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    let (_, host) = app.user("Host").await;
    let meeting = app.create_meeting(&host, "Before").await;
    let details = format!("/api/meetings/{}", meeting["id"].as_str().unwrap());
    assert_eq!(
        app.get(&details, &host).await.body["data"]["title"],
        "Before"
    );

    redis.refuse_writes(true);
    let resp = app.patch(&details, &host, json!({"title": "After"})).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert!(app.meeting_outbox.pending().await.unwrap() >= 1);

    redis.refuse_writes(false);
    let fresh = eventually(Duration::from_secs(5), async || {
        app.get(&details, &host).await.body["data"]["title"] == "After"
    })
    .await;
    assert!(fresh, "the relay never applied the refused invalidation");
    let drained = eventually(Duration::from_secs(5), async || {
        app.meeting_outbox.pending().await.unwrap() == 0
    })
    .await;
    assert!(drained);
}
