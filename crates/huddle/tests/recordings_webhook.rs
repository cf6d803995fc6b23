//! `POST /api/webhooks/livekit` end to end: signatures checked by the
//! LiveKit crate in recording-service (signed here with LiveKit's own token
//! builder, as a LiveKit server signs), each bad delivery with its status,
//! and order-proof, replay-proof rows whose invalidations are exactly their
//! real changes.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, TestOptions, assert_error, egress_webhook, livekit_keys};
use huddle_testkit::eventually;
use livekit_api::access_token::{AccessToken, Claims};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const STARTED_NS: i64 = 1_780_000_000_000_000_000;

fn ended(meeting: &str) -> String {
    egress_webhook(
        "egress_ended",
        meeting,
        &format!("EG_{meeting}"),
        STARTED_NS,
    )
    .to_json()
    .unwrap()
}

/// A hand-made token (LiveKit's claims, HS256), right in every way but what
/// `spoil` changes.
fn token(key: &str, secret: &str, body: &str, spoil: impl FnOnce(&mut Claims)) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as usize;
    let mut claims = Claims {
        iss: key.to_owned(),
        exp: now + 300,
        nbf: now,
        sha256: recording_service::livekit::body_sha256(body.as_bytes()),
        ..Claims::default()
    };
    spoil(&mut claims);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Each way a delivery can be wrong, with its answer. The signed ones are
/// signed by the `livekit-api` crate's own `AccessToken`.
///
/// Seen to fail with the receiver's check skipped (`receive` replaced by a
/// plain `serde_json::from_str`): the wrong-secret delivery answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_get_their_status() {
    let app = TestApp::spawn().await;
    let keys = livekit_keys();
    let (key, secret) = (keys.api_key.as_str(), keys.api_secret.as_str());
    let meeting = Uuid::new_v4().to_string();
    let body = ended(&meeting);
    let ok = |_: &mut Claims| {};

    let resp = app.post_webhook(&body, None).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    let resp = app.post_webhook(&body, Some("")).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    // LiveKit's own token builder, with the wrong secret or key.
    let sha = recording_service::livekit::body_sha256(body.as_bytes());
    let wrong_secret = AccessToken::with_api_key(key, "another-secret-0123456789abcdef")
        .with_sha256(&sha)
        .to_jwt()
        .unwrap();
    assert_error(
        &app.post_webhook(&body, Some(&wrong_secret)).await,
        401,
        "UNAUTHENTICATED",
    );
    let wrong_key = AccessToken::with_api_key("APIother", secret)
        .with_sha256(&sha)
        .to_jwt()
        .unwrap();
    assert_error(
        &app.post_webhook(&body, Some(&wrong_key)).await,
        401,
        "UNAUTHENTICATED",
    );
    // Hand-made: the control (accepted) and an expired one.
    let fine = token(key, secret, &body, ok);
    assert_eq!(
        app.post_webhook(&body, Some(&fine)).await.status,
        StatusCode::OK
    );
    let signed = keys.sign(body.as_bytes()).unwrap();
    let changed = body.replace("s3://recordings", "s3://elsewhere");
    assert_error(
        &app.post_webhook(&changed, Some(&signed)).await,
        401,
        "UNAUTHENTICATED",
    );
    let expired = token(key, secret, &body, |c| {
        c.exp -= 3_600;
        c.nbf -= 3_600;
    });
    assert_error(
        &app.post_webhook(&body, Some(&expired)).await,
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        &app.post_webhook(&body, Some("not.a.jwt")).await,
        401,
        "UNAUTHENTICATED",
    );

    let malformed = "{\"event\": \"egress_ended\", ";
    let resp = app
        .post_webhook(malformed, Some(&keys.sign(malformed.as_bytes()).unwrap()))
        .await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    let no_info = json!({"event": "egress_ended", "id": "EV_1"}).to_string();
    let resp = app
        .post_webhook(&no_info, Some(&keys.sign(no_info.as_bytes()).unwrap()))
        .await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    let huge = format!("{{\"event\": \"{}\"}}", "x".repeat(70 * 1024));
    let resp = app
        .post_webhook(&huge, Some(&keys.sign(huge.as_bytes()).unwrap()))
        .await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");

    // Acknowledged and ignored: another event, a room that is no meeting.
    let other = json!({"event": "room_started", "room": {"name": meeting}}).to_string();
    let resp = app
        .post_webhook(&other, Some(&keys.sign(other.as_bytes()).unwrap()))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["outcome"], "ignored");
    let lobby = egress_webhook("egress_ended", "lobby", "EG_lobby", STARTED_NS);
    assert_eq!(app.send_webhook(&lobby).await, "ignored");
    assert_eq!(app.webhook_metrics.get("egress_ended", "ignored_room"), 1);
    assert_eq!(app.webhook_metrics.get("other", "ignored_event"), 1);
    assert!(
        app.metric(
            "huddle_recording_webhooks_total{event=\"unknown\",outcome=\"unauthenticated\"}"
        )
        .await
            >= 1.0
    );

    // Only the well-signed delivery made a row.
    assert_eq!(rows(&app, &meeting).await.len(), 1);
    assert_eq!(app.webhook_metrics.get("egress_ended", "applied"), 1);
}

async fn rows(app: &TestApp, meeting: &str) -> Vec<recording_service::db::RecordingRow> {
    let mut conn = app.recording_db.conn().await.unwrap();
    recording_service::db::newest(&mut conn, meeting.parse().unwrap(), 100)
        .await
        .unwrap()
}

/// Invalidations recorded in recording-service's outbox so far: ids its
/// sequence handed out (rows are deleted once applied; ids are not reused).
async fn invalidations_recorded(app: &TestApp) -> usize {
    use diesel::{dsl::sql, sql_types::BigInt};
    use diesel_async::RunQueryDsl;
    let mut conn = app.recording_db.conn().await.unwrap();
    let n: i64 = diesel::select(sql::<BigInt>(
        "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cache_outbox_id_seq)",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    usize::try_from(n).unwrap()
}

/// The row without what depends on when it was written.
fn settled(row: &recording_service::db::RecordingRow) -> Value {
    json!({
        "status": row.status,
        "fileUrl": row.file_url.as_ref().map(|url| url.replace(&row.egress_id, "<egress>")),
        "duration": row.duration_seconds,
        "size": row.file_size_bytes, "error": row.error, "startedAt": row.started_at,
        "endedAt": row.ended_at,
    })
}

/// SPEC §3: every order of started/updated/ended, each delivered twice,
/// ends in the same row; a replay answers `unchanged` and invalidates
/// nothing; the invalidations recorded (outbox) equal the real changes.
///
/// Seen to fail with `merge`'s result always treated as a change (the
/// `next == current` check removed): "[0, 1, 2]: replay of egress_started"
/// answered `applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_of_deliveries_ends_in_the_same_row() {
    let app = TestApp::spawn().await;
    let events = ["egress_started", "egress_updated", "egress_ended"];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut finals = Vec::new();
    for order in orders {
        let meeting = Uuid::new_v4().to_string();
        let egress = format!("EG_{}", Uuid::new_v4().simple());
        let before = invalidations_recorded(&app).await;
        let mut applied = 0;
        for i in order {
            let webhook = egress_webhook(events[i], &meeting, &egress, STARTED_NS);
            let first = app.send_webhook(&webhook).await;
            assert_eq!(
                app.send_webhook(&webhook).await,
                "unchanged",
                "{order:?}: replay of {}",
                events[i]
            );
            applied += usize::from(first == "applied");
        }
        let invalidations = invalidations_recorded(&app).await - before;
        assert_eq!(invalidations, applied, "{order:?}");
        // The first delivery creates; only a later status changes it again.
        let expected = if order[0] == 2 { 1 } else { 2 };
        assert_eq!(applied, expected, "{order:?}");
        let rows = rows(&app, &meeting).await;
        assert_eq!(rows.len(), 1, "{order:?}");
        finals.push(settled(&rows[0]));
    }
    assert!(finals.iter().all(|f| *f == finals[0]), "{finals:#?}");
    assert_eq!(finals[0]["status"], "READY");
    assert_eq!(finals[0]["fileUrl"], "s3://recordings/<egress>.mp4");
    assert_eq!(finals[0]["duration"], 61);
    assert_eq!(finals[0]["size"], 7_654_321);
}

/// A late `egress_started` after `egress_ended` changes nothing, and a
/// second final status (FAILED after READY) neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_only_moves_forward() {
    let app = TestApp::spawn().await;
    let meeting = Uuid::new_v4().to_string();
    let egress = "EG_forward";
    let ended = egress_webhook("egress_ended", &meeting, egress, STARTED_NS);
    assert_eq!(app.send_webhook(&ended).await, "applied");
    let before = settled(&rows(&app, &meeting).await[0]);
    let started = egress_webhook("egress_started", &meeting, egress, STARTED_NS);
    assert_eq!(app.send_webhook(&started).await, "unchanged");
    let mut failed = ended.clone();
    failed.status = recording_service::livekit::EgressStatus::EgressFailed;
    failed.error = "late failure".to_owned();
    assert_eq!(app.send_webhook(&failed).await, "unchanged");
    assert_eq!(settled(&rows(&app, &meeting).await[0]), before);
}

/// recording-service unreachable behind the gateway: webhooks answer 503
/// (LiveKit retries) and so do the recording reads, meeting routes keep
/// answering, and the retried webhook lands once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_service_down_answers_503() {
    let app = TestApp::spawn_with(TestOptions {
        proxies: true,
        ..TestOptions::default()
    })
    .await;
    let proxies = app.proxies.as_ref().unwrap();
    let (_, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Down").await;
    let id = meeting["id"].as_str().unwrap();
    let body = egress_webhook("egress_ended", id, "EG_down", STARTED_NS)
        .to_json()
        .unwrap();
    let signed = livekit_keys().sign(body.as_bytes()).unwrap();

    proxies.recording_grpc.set_up(false);
    assert_error(
        &app.post_webhook(&body, Some(&signed)).await,
        503,
        "UNAVAILABLE",
    );
    let read = app
        .get(&format!("/api/meetings/{id}/recording"), &host)
        .await;
    assert_error(&read, 503, "UNAVAILABLE");
    let details = app.get(&format!("/api/meetings/{id}"), &host).await;
    assert_eq!(details.status, StatusCode::OK);

    proxies.recording_grpc.set_up(true);
    let landed = eventually(Duration::from_secs(10), async || {
        app.post_webhook(&body, Some(&signed)).await.status == StatusCode::OK
    })
    .await;
    assert!(landed);
    let read = app
        .get(&format!("/api/meetings/{id}/recording"), &host)
        .await;
    assert_eq!(read.body["data"]["status"], "READY", "{:?}", read.body);
}
