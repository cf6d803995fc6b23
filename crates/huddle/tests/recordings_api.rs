//! `GET /api/meetings/{id}/recording(s)` end to end: authorization rule by
//! rule, bad input, the TTL Redis holds (30 s while PROCESSING, 600 s once
//! READY), the "no recording yet" marker the first webhook clears, SPEC §5's
//! recording rows, and the meeting delete that takes recordings and keys.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cache_core::CacheKey;
use common::{TestApp, assert_error, egress_webhook};
use huddle_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const STARTED_NS: i64 = 1_780_000_000_000_000_000;

async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    let resp = app.get(path, token).await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {:?}", resp.body);
    resp.body["data"].clone()
}

/// A LIVE meeting with a guest who joined: `(meeting id, host, guest)`.
async fn meeting_with_guest(app: &TestApp) -> (String, String, String) {
    let (_, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Recorded").await;
    let (_, guest) = app.user("Guest").await;
    app.join(&guest, meeting["inviteCode"].as_str().unwrap())
        .await;
    (meeting["id"].as_str().unwrap().to_owned(), host, guest)
}

/// The remaining TTL of a cached value in ms (as `huddle cache get` shows).
async fn ttl_ms(app: &TestApp, key: &CacheKey) -> i64 {
    let (raw, ttl) = app.cache.inspect(key.path()).await.unwrap().unwrap();
    assert!(!raw.starts_with('<'), "{}: {raw}", key.path());
    ttl
}

/// Host, participant and a participant who left may read; a stranger gets
/// the 404 of a missing meeting; an admin token is nobody's participant.
///
/// Seen to fail with the gateway's `access` call left out of `authorized`:
/// the stranger read the recording (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rule_by_rule() {
    let app = TestApp::spawn().await;
    let (meeting, host, guest) = meeting_with_guest(&app).await;
    let egress = format!("EG_{meeting}");
    app.send_webhook(&egress_webhook(
        "egress_ended",
        &meeting,
        &egress,
        STARTED_NS,
    ))
    .await;
    let (_, leaver) = app.user("Leaver").await;
    let code = read(&app, &format!("/api/meetings/{meeting}"), &host).await["inviteCode"]
        .as_str()
        .unwrap()
        .to_owned();
    app.join(&leaver, &code).await;
    let left = app
        .post(
            &format!("/api/meetings/{meeting}/leave"),
            &leaver,
            json!({}),
        )
        .await;
    assert_eq!(left.status, StatusCode::OK);
    let (_, stranger) = app.user("Stranger").await;
    for path in [
        format!("/api/meetings/{meeting}/recording"),
        format!("/api/meetings/{meeting}/recordings"),
    ] {
        for (who, token) in [("host", &host), ("guest", &guest), ("left", &leaver)] {
            let resp = app.get(&path, token).await;
            assert_eq!(resp.status, StatusCode::OK, "{who} {path}: {:?}", resp.body);
        }
        assert_error(&app.get(&path, &stranger).await, 404, "NOT_FOUND");
        assert_error(
            &app.get(&path, &app.admin_token()).await,
            403,
            "PERMISSION_DENIED",
        );
        let anonymous = app.call(Method::GET, &path, None, None).await;
        assert_error(&anonymous, 401, "UNAUTHENTICATED");
    }
    let one = read(&app, &format!("/api/meetings/{meeting}/recording"), &guest).await;
    assert_eq!(one["status"], "READY");
    assert_eq!(one["egressId"], egress);
    assert_eq!(one["meetingId"], meeting);
    assert_eq!(one["durationSeconds"], 61);
    assert_eq!(one["fileSizeBytes"], 7_654_321);
    assert_eq!(one["fileUrl"], format!("s3://recordings/{egress}.mp4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_for_every_route() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user("Someone").await;
    for path in [
        "/api/meetings/{id}/recording",
        "/api/meetings/{id}/recordings",
    ] {
        for bad in ["42", "not-a-uuid", "%00"] {
            let resp = app.get(&path.replace("{id}", bad), &user).await;
            assert_error(&resp, 400, "INVALID_ARGUMENT");
        }
        let missing = path.replace("{id}", &Uuid::new_v4().to_string());
        assert_error(&app.get(&missing, &user).await, 404, "NOT_FOUND");
        // POST on the list starts a recording (recording_control.rs).
        let (method, allow) = match path.ends_with('s') {
            true => (Method::DELETE, "GET, POST"),
            false => (Method::POST, "GET"),
        };
        let wrong = app
            .call(method, &missing, Some(&user), Some(json!({})))
            .await;
        assert_error(&wrong, 405, "METHOD_NOT_ALLOWED");
        assert_eq!(wrong.headers["allow"], allow);
    }
    let get = app
        .call(Method::GET, "/api/webhooks/livekit", None, None)
        .await;
    assert_error(&get, 405, "METHOD_NOT_ALLOWED");
    let empty = app.post_webhook("", Some("x")).await;
    assert_error(&empty, 401, "UNAUTHENTICATED");
}

/// SPEC §4: the TTL follows the value — ≈30 s while PROCESSING, ≈600 s
/// once READY — and "no recording yet" is a not-found marker that the
/// first webhook clears (SPEC §5, recording created).
///
/// Seen to fail with `LATEST_TTL`'s `of` returning 600 s whatever the
/// status: the PROCESSING value was stored for ≈600 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_follows_the_status_and_the_marker_is_cleared() {
    let app = TestApp::spawn().await;
    let (meeting, host, _) = meeting_with_guest(&app).await;
    let one = format!("/api/meetings/{meeting}/recording");
    let all = format!("/api/meetings/{meeting}/recordings");
    let id = meeting.parse().unwrap();
    let (one_key, all_key) = (
        CacheKey::meeting_recording(id),
        CacheKey::meeting_recordings(id),
    );

    let none = app.get(&one, &host).await;
    assert_error(&none, 404, "NO_RECORDING");
    assert_eq!(read(&app, &all, &host).await, json!([]));
    let (marker, _) = app.cache.inspect(one_key.path()).await.unwrap().unwrap();
    assert_eq!(marker, "<not-found marker>");

    let egress = "EG_ttl";
    app.send_webhook(&egress_webhook(
        "egress_started",
        &meeting,
        egress,
        STARTED_NS,
    ))
    .await;
    assert_eq!(
        app.cache.inspect(one_key.path()).await.unwrap(),
        None,
        "marker cleared"
    );
    assert_eq!(app.cache.inspect(all_key.path()).await.unwrap(), None);
    assert_eq!(read(&app, &one, &host).await["status"], "PROCESSING");
    assert_eq!(read(&app, &all, &host).await[0]["status"], "PROCESSING");
    for key in [&one_key, &all_key] {
        let ms = ttl_ms(&app, key).await;
        assert!(
            (20_000..=33_000).contains(&ms),
            "{}: {ms} ms while PROCESSING",
            key.path()
        );
    }

    app.send_webhook(&egress_webhook(
        "egress_ended",
        &meeting,
        egress,
        STARTED_NS,
    ))
    .await;
    assert_eq!(read(&app, &one, &host).await["status"], "READY");
    assert_eq!(read(&app, &all, &host).await[0]["status"], "READY");
    for key in [&one_key, &all_key] {
        let ms = ttl_ms(&app, key).await;
        assert!(
            (530_000..=660_000).contains(&ms),
            "{}: {ms} ms once READY",
            key.path()
        );
    }
}

/// SPEC §5 "recording created / status change": both keys warm, a second
/// egress of the meeting starts, both reads show it at once (newest first).
///
/// Seen to fail with the webhook's `Outbox::record` left out: the newest
/// recording was still the cached `EG_first` (READY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_recording_created_and_status_change() {
    let app = TestApp::spawn().await;
    let (meeting, host, guest) = meeting_with_guest(&app).await;
    let one = format!("/api/meetings/{meeting}/recording");
    let all = format!("/api/meetings/{meeting}/recordings");
    app.send_webhook(&egress_webhook(
        "egress_ended",
        &meeting,
        "EG_first",
        STARTED_NS,
    ))
    .await;
    assert_eq!(read(&app, &one, &guest).await["egressId"], "EG_first");
    assert_eq!(read(&app, &all, &host).await.as_array().unwrap().len(), 1);
    let id = meeting.parse().unwrap();
    let keys = [
        CacheKey::meeting_recording(id),
        CacheKey::meeting_recordings(id),
    ];
    app.assert_cached(&keys.iter().map(|k| k.path().to_owned()).collect::<Vec<_>>())
        .await;

    let later = STARTED_NS + 3_600_000_000_000;
    let second = egress_webhook("egress_started", &meeting, "EG_second", later);
    assert_eq!(app.send_webhook(&second).await, "applied");
    let newest = read(&app, &one, &guest).await;
    assert_eq!(
        (newest["egressId"].as_str(), newest["status"].as_str()),
        (Some("EG_second"), Some("PROCESSING"))
    );
    let listed: Vec<_> = read(&app, &all, &host)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["egressId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["EG_second", "EG_first"]);

    let ended = egress_webhook("egress_ended", &meeting, "EG_second", later);
    assert_eq!(app.send_webhook(&ended).await, "applied");
    assert_eq!(read(&app, &one, &guest).await["status"], "READY");
    assert_eq!(read(&app, &all, &host).await[0]["status"], "READY");
}

/// SPEC §5 "meeting delete": its recordings and their keys go (the
/// cascade), and a webhook arriving after that creates nothing.
///
/// Seen to fail with `cascade_targets` returning no target: the row was
/// still there after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_delete_takes_recordings_and_keys() {
    let app = TestApp::spawn().await;
    let (meeting, host, _) = meeting_with_guest(&app).await;
    let id: Uuid = meeting.parse().unwrap();
    app.send_webhook(&egress_webhook(
        "egress_ended",
        &meeting,
        "EG_gone",
        STARTED_NS,
    ))
    .await;
    read(&app, &format!("/api/meetings/{meeting}/recording"), &host).await;
    read(&app, &format!("/api/meetings/{meeting}/recordings"), &host).await;
    assert_eq!(
        app.keys_containing(&format!("{meeting}:recording"))
            .await
            .len(),
        2
    );

    let deleted = app.delete(&format!("/api/meetings/{meeting}"), &host).await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    let rows = async || {
        let mut conn = app.recording_db.conn().await.unwrap();
        recording_service::db::newest(&mut conn, id, 100)
            .await
            .unwrap()
            .len()
    };
    assert!(
        eventually(Duration::from_secs(10), async || rows().await == 0).await,
        "rows left"
    );
    assert!(
        app.keys_containing(&format!("{meeting}:recording"))
            .await
            .is_empty()
    );
    assert_error(
        &app.get(&format!("/api/meetings/{meeting}/recording"), &host)
            .await,
        404,
        "NOT_FOUND",
    );

    // LiveKit retries for a while: a late webhook must not bring it back.
    let late = egress_webhook("egress_updated", &meeting, "EG_late", STARTED_NS);
    assert_eq!(app.send_webhook(&late).await, "ignored");
    assert_eq!(rows().await, 0);
}
