//! LiveKit room tokens (issue 21 item 1): a LIVE meeting's join answer and
//! `POST /api/meetings/{id}/media-token` carry a token that LiveKit's own
//! verifier (npm `livekit-server-sdk`'s `TokenVerifier`) accepts, with the
//! claims of SPEC §3; nobody else gets one, and a kept idempotent answer
//! never holds one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{io::Write, process::Stdio};

use common::{TestApp, assert_error, livekit_keys};
use diesel::sql_types::Bytea;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The claims as LiveKit's Node SDK decodes them (signature, `iss`, expiry
/// checked by it), through `scripts/livekit-sdk/verify-token.sh`.
fn verify_with_livekit_sdk(token: &str, secret: &str) -> Result<Value, String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/livekit-sdk/verify-token.sh"
    );
    let keys = livekit_keys();
    let mut child = std::process::Command::new("bash")
        .args([script, &keys.api_key, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn media_token(app: &TestApp, meeting: &str, token: &str) -> common::Response {
    app.post(
        &format!("/api/meetings/{meeting}/media-token"),
        token,
        json!({}),
    )
    .await
}

/// The join answer's token and a host's media token decode with LiveKit's
/// own verifier into SPEC §3's claims: identity = user id, name = the
/// user's current name, room = meeting id, join/publish/subscribe/data,
/// roomAdmin and roomRecord for the host only, at most 6 h; a wrong secret
/// is refused by it. Seen to fail with `video_grants` giving `room_admin:
/// true` to everyone: the guest's claims had `roomAdmin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_carry_spec_claims_checked_by_livekits_own_verifier() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Hedy Host").await;
    let (guest_id, guest) = app.user("Grace Guest").await;
    let meeting = app.create_live_meeting(&host, "Media").await;
    let id = meeting["id"].as_str().unwrap();
    let joined = app
        .join(&guest, meeting["inviteCode"].as_str().unwrap())
        .await;
    let livekit = &joined["livekit"];
    assert_eq!(livekit["url"], app.livekit.url().as_str(), "{joined}");
    let secret = livekit_keys().api_secret;
    let claims = verify_with_livekit_sdk(livekit["token"].as_str().unwrap(), &secret).unwrap();
    assert_eq!(claims["sub"], guest_id.as_str());
    assert_eq!(claims["name"], "Grace Guest");
    assert_eq!(claims["iss"], livekit_keys().api_key.as_str());
    let video = &claims["video"];
    assert_eq!(video["room"], id);
    for grant in ["roomJoin", "canPublish", "canSubscribe", "canPublishData"] {
        assert_eq!(video[grant], true, "{grant}: {claims}");
    }
    assert!(
        video.get("roomAdmin").is_none() && video.get("roomRecord").is_none(),
        "{claims}"
    );
    let (exp, nbf) = (
        claims["exp"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
    );
    assert!(exp - nbf <= 6 * 3600, "{claims}");
    let expires_at = chrono::DateTime::parse_from_rfc3339(livekit["expiresAt"].as_str().unwrap());
    assert_eq!(expires_at.unwrap().timestamp(), exp);

    // The name is the current one.
    let renamed = app
        .patch(
            &format!("/api/users/{host_id}"),
            &host,
            json!({"name": "Hedy R."}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let resp = media_token(&app, id, &host).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let token = resp.body["data"]["token"].as_str().unwrap();
    let claims = verify_with_livekit_sdk(token, &secret).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["name"].as_str()),
        (Some(host_id.as_str()), Some("Hedy R."))
    );
    assert_eq!(claims["video"]["roomAdmin"], true, "{claims}");
    assert_eq!(claims["video"]["roomRecord"], true, "{claims}");

    let forged = verify_with_livekit_sdk(token, "another-secret-of-32-bytes-000000000");
    assert!(
        forged.is_err(),
        "LiveKit's verifier accepted a wrong secret"
    );
}

/// Only the host or an active participant of a LIVE meeting gets a token:
/// a stranger gets the missing meeting's 404, a participant who left a 403
/// (and a token again after rejoining), an ENDED or SCHEDULED meeting a
/// 403 (and an ENDED meeting's join no token), a bad id a 400. Seen to
/// fail with the `membership.active` check removed: the participant who
/// left got a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_leavers_and_closed_rooms_get_no_token() {
    let app = TestApp::spawn().await;
    let (_, host) = app.user("Host").await;
    let (_, guest) = app.user("Guest").await;
    let (_, stranger) = app.user("Stranger").await;
    let meeting = app.create_live_meeting(&host, "Closed").await;
    let id = meeting["id"].as_str().unwrap();
    let code = meeting["inviteCode"].as_str().unwrap();
    app.join(&guest, code).await;

    assert_error(&media_token(&app, id, &stranger).await, 404, "NOT_FOUND");
    assert_error(
        &media_token(&app, "not-a-uuid", &guest).await,
        400,
        "INVALID_ARGUMENT",
    );
    let admin = app.admin_token();
    assert_error(
        &media_token(&app, id, &admin).await,
        403,
        "PERMISSION_DENIED",
    );

    let left = app
        .post(&format!("/api/meetings/{id}/leave"), &guest, json!({}))
        .await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert_error(
        &media_token(&app, id, &guest).await,
        403,
        "PERMISSION_DENIED",
    );
    let rejoined = app.join(&guest, code).await;
    assert!(rejoined["livekit"]["token"].is_string(), "{rejoined}");
    assert_eq!(media_token(&app, id, &guest).await.status, StatusCode::OK);

    let ended = app
        .post(&format!("/api/meetings/{id}/end"), &host, json!({}))
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{:?}", ended.body);
    for who in [&host, &guest] {
        assert_error(&media_token(&app, id, who).await, 403, "PERMISSION_DENIED");
    }

    let scheduled = app.create_meeting(&host, "Later").await;
    let joined = app
        .join(&guest, scheduled["inviteCode"].as_str().unwrap())
        .await;
    assert_eq!(joined["livekit"], Value::Null, "{joined}");
    let sid = scheduled["id"].as_str().unwrap();
    assert_error(
        &media_token(&app, sid, &host).await,
        403,
        "PERMISSION_DENIED",
    );
}

#[derive(diesel::QueryableByName)]
struct Kept {
    #[diesel(sql_type = Bytea)]
    answer: Vec<u8>,
}

/// A replayed join (same `Idempotency-Key`) gets the first answer with a
/// token minted for the replay, and the kept answer in meeting-service's
/// database holds no token. Seen to fail with the token set on the answer
/// before `idempotency::keep`: the kept bytes contained the first token and
/// the replay answered it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_join_mints_a_fresh_token_and_keeps_none() {
    let app = TestApp::spawn().await;
    let (_, host) = app.user("Host").await;
    let (_, guest) = app.user("Guest").await;
    let meeting = app.create_live_meeting(&host, "Replay").await;
    let body = json!({"inviteCode": meeting["inviteCode"]});
    let join = || async {
        let resp = app
            .http
            .post(format!("{}/api/meetings/join", app.base))
            .bearer_auth(&guest)
            .header("Idempotency-Key", "join-once")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.unwrap()["data"].clone()
    };
    let first = join().await;
    // Tokens minted in the same second with the same claims are the same
    // bytes; the replay must be a mint of its own, so wait one out.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let replay = join().await;
    assert_eq!(replay["participant"], first["participant"]);
    assert_eq!(replay["joinedNow"], first["joinedNow"]);
    let (t1, t2) = (&first["livekit"]["token"], &replay["livekit"]["token"]);
    assert!(t1.is_string() && t2.is_string(), "{first} {replay}");
    assert_ne!(t1, t2, "the replay answered the first token");

    let mut conn = app.meeting_db.conn().await.unwrap();
    let kept: Vec<Kept> = diesel::sql_query("SELECT answer FROM idempotency_keys")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    for token in [t1, t2] {
        let token = token.as_str().unwrap().as_bytes();
        assert!(
            !kept[0].answer.windows(token.len()).any(|w| w == token),
            "a kept answer holds a room token"
        );
    }
}
