//! Every `/api/meetings…` route (and the meeting views under
//! `/api/users/{id}/…`) over HTTP, against the in-process gateway, meeting
//! service and user service, with real Postgres and Redis: shapes, status
//! rules, invite codes, authorization rule by rule, bad input for every route.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, assert_error, later};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn code_of(v: &Value) -> String {
    v["inviteCode"].as_str().unwrap().to_owned()
}

fn assert_rfc3339_utc(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert!(s.ends_with('Z'), "{s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_read_follows_the_prisma_shape() {
    let app = TestApp::spawn().await;
    let (host, token) = app.user("Ada Host").await;
    let when = later(3);
    let resp = app
        .post(
            "/api/meetings",
            &token,
            json!({"title": "  Sync  ", "description": "Agenda", "scheduledAt": when}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    let created = &resp.body["data"];
    assert_eq!(created["title"], "Sync");
    assert_eq!(created["description"], "Agenda");
    assert_eq!(created["status"], "SCHEDULED");
    assert_eq!(created["hostId"], host);
    assert!(created["startedAt"].is_null() && created["endedAt"].is_null());
    for field in ["scheduledAt", "createdAt", "updatedAt"] {
        assert_rfc3339_utc(&created[field]);
    }
    let scheduled =
        chrono::DateTime::parse_from_rfc3339(created["scheduledAt"].as_str().unwrap()).unwrap();
    let asked = chrono::DateTime::parse_from_rfc3339(&when).unwrap();
    assert_eq!(scheduled.timestamp(), asked.timestamp());

    let id = id_of(created);
    let resp = app.get(&format!("/api/meetings/{id}"), &token).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let details = &resp.body["data"];
    assert_eq!(details["id"], id.as_str());
    assert_eq!(details["inviteCode"], created["inviteCode"]);
    assert_eq!(details["host"]["id"], host);
    assert_eq!(details["host"]["name"], "Ada Host");
    assert!(details["host"]["image"].is_null());
    assert!(details["host"].get("email").is_none(), "{details}");
    assert_eq!(details["_count"]["participants"], 0);
    // From chat-service: a number (no message yet).
    assert_eq!(details["_count"]["chatMessages"], 0, "{details}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_codes_are_unguessable_unique_and_url_safe() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Host").await;
    let mut codes = std::collections::HashSet::new();
    for i in 0..15 {
        let meeting = app.create_meeting(&token, &format!("m{i}")).await;
        let code = code_of(&meeting);
        assert!(code.len() >= 10, "{code}");
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{code}"
        );
        assert!(codes.insert(code));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_meeting_is_live_with_its_host_in_it() {
    let app = TestApp::spawn().await;
    let (host, token) = app.user("Host").await;
    let meeting = app.create_live_meeting(&token, "Right now").await;
    assert_eq!(meeting["status"], "LIVE");
    assert_rfc3339_utc(&meeting["startedAt"]);
    let id = id_of(&meeting);
    let participants = app
        .get(&format!("/api/meetings/{id}/participants"), &token)
        .await;
    let list = participants.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["userId"], host);
    assert_eq!(list[0]["user"]["name"], "Host");
    let count = app
        .get(&format!("/api/meetings/{id}/participants/count"), &token)
        .await;
    assert_eq!(count.body["data"]["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_moves_only_forward_and_conflicts_name_the_status() {
    let app = TestApp::spawn().await;
    let (host, token) = app.user("Host").await;
    let id = id_of(&app.create_meeting(&token, "Forward only").await);
    let path = |action: &str| format!("/api/meetings/{id}/{action}");

    let resp = app.post(&path("end"), &token, json!({})).await;
    assert_error(&resp, 409, "CONFLICT");
    assert!(resp.body["message"].as_str().unwrap().contains("SCHEDULED"));

    let resp = app.post(&path("start"), &token, json!({})).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["status"], "LIVE");
    assert_rfc3339_utc(&resp.body["data"]["startedAt"]);
    // Starting joins the host.
    let parts = app
        .get(&format!("/api/meetings/{id}/participants"), &token)
        .await;
    assert_eq!(parts.body["data"][0]["userId"], host);

    let resp = app.post(&path("start"), &token, json!({})).await;
    assert_error(&resp, 409, "CONFLICT");
    assert!(resp.body["message"].as_str().unwrap().contains("LIVE"));
    let resp = app
        .patch(
            &format!("/api/meetings/{id}"),
            &token,
            json!({"scheduledAt": later(5)}),
        )
        .await;
    assert_error(&resp, 409, "CONFLICT");
    assert!(resp.body["message"].as_str().unwrap().contains("LIVE"));

    let resp = app.post(&path("end"), &token, json!({})).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["status"], "ENDED");
    assert_rfc3339_utc(&resp.body["data"]["endedAt"]);

    for action in ["start", "end"] {
        let resp = app.post(&path(action), &token, json!({})).await;
        assert_error(&resp, 409, "CONFLICT");
        assert!(resp.body["message"].as_str().unwrap().contains("ENDED"));
    }
    for status in ["SCHEDULED", "LIVE"] {
        let resp = app
            .patch(
                &format!("/api/meetings/{id}"),
                &token,
                json!({"status": status}),
            )
            .await;
        assert_error(&resp, 409, "CONFLICT");
        assert!(resp.body["message"].as_str().unwrap().contains("ENDED"));
    }
    // Restating the current status changes nothing and is accepted.
    let resp = app
        .patch(
            &format!("/api/meetings/{id}"),
            &token,
            json!({"status": "ENDED"}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_status_is_the_same_transition_as_start_and_end() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Host").await;
    let id = id_of(&app.create_meeting(&token, "Via patch").await);
    let path = format!("/api/meetings/{id}");
    let resp = app.patch(&path, &token, json!({"status": "ENDED"})).await;
    assert_error(&resp, 409, "CONFLICT");
    let resp = app.patch(&path, &token, json!({"status": "LIVE"})).await;
    assert_eq!(resp.body["data"]["status"], "LIVE", "{:?}", resp.body);
    let resp = app.patch(&path, &token, json!({"status": "ENDED"})).await;
    assert_eq!(resp.body["data"]["status"], "ENDED", "{:?}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_marks_everyone_still_in_it_as_left() {
    let app = TestApp::spawn().await;
    let (_, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Ends").await;
    let (id, code) = (id_of(&meeting), code_of(&meeting));
    let (_, guest) = app.user("Guest").await;
    app.join(&guest, &code).await;
    let count_path = format!("/api/meetings/{id}/participants/count");
    assert_eq!(app.get(&count_path, &host).await.body["data"]["count"], 2);

    let resp = app
        .post(&format!("/api/meetings/{id}/end"), &host, json!({}))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(app.get(&count_path, &host).await.body["data"]["count"], 0);
    let parts = app
        .get(&format!("/api/meetings/{id}/participants"), &guest)
        .await;
    for p in parts.body["data"].as_array().unwrap() {
        assert_rfc3339_utc(&p["leftAt"]);
    }
    // Joining an ENDED meeting is a conflict.
    let resp = app
        .post("/api/meetings/join", &guest, json!({"inviteCode": code}))
        .await;
    assert_error(&resp, 409, "CONFLICT");
    assert!(resp.body["message"].as_str().unwrap().contains("ENDED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_idempotent_and_leave_sets_left_at() {
    let app = TestApp::spawn().await;
    let (_, host) = app.user("Host").await;
    let meeting = app.create_meeting(&host, "Join me").await;
    let (id, code) = (id_of(&meeting), code_of(&meeting));
    let (guest_id, guest) = app.user("Guest").await;

    let first = app.join(&guest, &code).await;
    assert_eq!(first["joinedNow"], true);
    assert_eq!(first["meeting"]["id"], id.as_str());
    assert_eq!(first["meeting"]["title"], "Join me");
    assert_eq!(first["meeting"]["status"], "SCHEDULED");
    assert_eq!(first["meeting"]["host"]["name"], "Host");
    assert_eq!(first["participant"]["userId"], guest_id);
    assert!(first["participant"]["leftAt"].is_null());
    let again = app.join(&guest, &code).await;
    assert_eq!(again["joinedNow"], false);
    assert_eq!(again["participant"]["id"], first["participant"]["id"]);

    let count_path = format!("/api/meetings/{id}/participants/count");
    assert_eq!(app.get(&count_path, &guest).await.body["data"]["count"], 1);

    let leave = format!("/api/meetings/{id}/leave");
    let left = app.post(&leave, &guest, json!({})).await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert_eq!(left.body["data"]["id"], first["participant"]["id"]);
    assert_rfc3339_utc(&left.body["data"]["leftAt"]);
    // Leaving again changes nothing.
    let again = app.post(&leave, &guest, json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["data"]["leftAt"], left.body["data"]["leftAt"]);
    assert_eq!(app.get(&count_path, &guest).await.body["data"]["count"], 0);

    // Rejoining opens a new participation.
    let back = app.join(&guest, &code).await;
    assert_eq!(back["joinedNow"], true);
    assert_ne!(back["participant"]["id"], first["participant"]["id"]);
    let parts = app
        .get(&format!("/api/meetings/{id}/participants"), &guest)
        .await;
    assert_eq!(parts.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(app.get(&count_path, &guest).await.body["data"]["count"], 1);

    // The host may join their own meeting like anyone.
    let hosted = app.join(&host, &code).await;
    assert_eq!(hosted["joinedNow"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_invite_codes_are_404_and_cached_as_not_found() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Guest").await;
    let body = json!({"inviteCode": "NoSuchCode42"});
    let resp = app.post("/api/meetings/join", &token, body.clone()).await;
    assert_error(&resp, 404, "NOT_FOUND");
    assert_eq!(resp.body["message"], "Invalid invite code");

    let checkouts = app.meeting_db.checkouts();
    for _ in 0..3 {
        let resp = app.post("/api/meetings/join", &token, body.clone()).await;
        assert_error(&resp, 404, "NOT_FOUND");
        assert_eq!(resp.body["message"], "Invalid invite code");
    }
    assert_eq!(
        app.meeting_db.checkouts(),
        checkouts,
        "answered from the not-found marker"
    );
    let marker_hits = app
        .metric("huddle_cache_lookups_total{key=\"meetingByInviteCode\",result=\"not_found_hit\"}")
        .await;
    assert_eq!(marker_hits, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_invite_codes_are_400_without_touching_redis_or_postgres() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Guest").await;
    let meeting = app.create_meeting(&token, "Real").await;
    let real = code_of(&meeting);
    let lookups = "huddle_cache_lookups_total{key=\"meetingByInviteCode\"";
    let lower = real.to_lowercase();
    let mut bad: Vec<Value> = vec![
        json!(""),
        json!("short"),
        json!("*"),
        json!("abcdefghijk*"),
        json!("abcdefghijk:"),
        json!("abcdefghij%2A"),
        json!("../../etc/pass"),
        json!(format!("{real}x")),
        json!(12),
        json!(null),
    ];
    if lower != real {
        // Codes match exactly: the lowercased code is another (unknown) code.
        let resp = app
            .post("/api/meetings/join", &token, json!({"inviteCode": lower}))
            .await;
        assert_error(&resp, 404, "NOT_FOUND");
    }
    let checkouts_after_lower = app.meeting_db.checkouts();
    let metrics_after_lower = app.metrics().await;
    for code in bad.drain(..) {
        let resp = app
            .post("/api/meetings/join", &token, json!({"inviteCode": code}))
            .await;
        assert_error(&resp, 400, "INVALID_ARGUMENT");
        assert!(
            resp.body["message"]
                .as_str()
                .unwrap()
                .starts_with("inviteCode:"),
            "{code}: {:?}",
            resp.body
        );
    }
    let resp = app.post("/api/meetings/join", &token, json!({})).await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    assert!(
        resp.body["message"]
            .as_str()
            .unwrap()
            .contains("inviteCode")
    );

    assert_eq!(app.meeting_db.checkouts(), checkouts_after_lower);
    let lookup_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(lookups))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        lookup_lines(&app.metrics().await),
        lookup_lines(&metrics_after_lower),
        "no invite-code lookup reached the cache"
    );
    let keys = app.keys_containing("meeting:invite:").await;
    assert!(
        keys.iter()
            .all(|k| !k.contains('*') && !k.contains("short")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_fields_and_rotates_the_invite_code() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Host").await;
    let meeting = app.create_meeting(&token, "Before").await;
    let (id, old_code) = (id_of(&meeting), code_of(&meeting));
    let path = format!("/api/meetings/{id}");
    let when = later(10);
    let resp = app
        .patch(
            &path,
            &token,
            json!({"title": "After", "description": "New agenda", "scheduledAt": when}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["title"], "After");
    assert_eq!(resp.body["data"]["description"], "New agenda");
    assert_eq!(resp.body["data"]["inviteCode"], old_code.as_str());

    let resp = app.patch(&path, &token, json!({"description": null})).await;
    assert!(
        resp.body["data"]["description"].is_null(),
        "{:?}",
        resp.body
    );

    let resp = app
        .patch(&path, &token, json!({"rotateInviteCode": true}))
        .await;
    let new_code = code_of(&resp.body["data"]);
    assert_ne!(new_code, old_code);
    let (_, guest) = app.user("Guest").await;
    let resp = app
        .post(
            "/api/meetings/join",
            &guest,
            json!({"inviteCode": old_code}),
        )
        .await;
    assert_error(&resp, 404, "NOT_FOUND");
    app.join(&guest, &new_code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_meeting_and_its_participants() {
    let app = TestApp::spawn().await;
    let (_, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Doomed").await;
    let (id, code) = (id_of(&meeting), code_of(&meeting));
    let (guest_id, guest) = app.user("Guest").await;
    app.join(&guest, &code).await;

    let resp = app.delete(&format!("/api/meetings/{id}"), &host).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["id"], id.as_str());
    assert_error(
        &app.get(&format!("/api/meetings/{id}"), &host).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.delete(&format!("/api/meetings/{id}"), &host).await,
        404,
        "NOT_FOUND",
    );
    let resp = app
        .post("/api/meetings/join", &guest, json!({"inviteCode": code}))
        .await;
    assert_error(&resp, 404, "NOT_FOUND");
    let participations = app
        .get(&format!("/api/users/{guest_id}/participations"), &guest)
        .await;
    assert_eq!(participations.body["data"], json!([]));

    // The cascade record was written with the delete and, with no chat or
    // recording service to ask yet, completed by the relay the delete woke
    // (not by this test: seen to fail, still pending, with the kit's relay
    // for the cascade removed from `meeting_service::bind`).
    let mut pending = app.meeting_cascade.pending().await.unwrap();
    for _ in 0..100 {
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        pending = app.meeting_cascade.pending().await.unwrap();
    }
    assert_eq!(pending, 0, "the relay did not complete the deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_have_fixed_pages_and_stable_orders() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Host").await;
    let (guest_id, guest) = app.user("Guest").await;

    // 22 scheduled meetings at distinct times, created out of order.
    let mut scheduled = Vec::new();
    for i in [
        5, 1, 9, 3, 7, 11, 2, 0, 8, 4, 6, 10, 12, 13, 15, 14, 17, 16, 19, 18, 21, 20,
    ] {
        let resp = app
            .post(
                "/api/meetings",
                &host,
                json!({"title": format!("s{i}"), "scheduledAt": later(10 + i)}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED);
        scheduled.push(resp.body["data"].clone());
    }
    let list = app.get("/api/meetings/scheduled", &guest).await.body["data"].clone();
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    assert_eq!(titles, expected, "soonest first, 20 of them");
    assert_eq!(list[0]["host"]["name"], "Host");

    // 22 live meetings: newest start first, 20 of them.
    let mut live = Vec::new();
    for i in 0..22 {
        let meeting = app.create_live_meeting(&host, &format!("l{i}")).await;
        live.push(meeting);
    }
    let list = app.get("/api/meetings/live", &guest).await.body["data"].clone();
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (2..22).rev().map(|i| format!("l{i}")).collect();
    assert_eq!(titles, expected);
    assert_eq!(list[0]["_count"]["participants"], 1);
    assert_eq!(list[0]["host"]["id"], host_id);

    // 52 hosted by one user with 8 more: the 50 newest, newest first.
    for i in 0..8 {
        app.create_meeting(&host, &format!("x{i}")).await;
    }
    let list = app
        .get(&format!("/api/users/{host_id}/meetings"), &host)
        .await;
    let list = list.body["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 50);
    assert_eq!(list[0]["title"], "x7");
    assert!(list.iter().all(|m| m["inviteCode"].is_string()));
    let created: Vec<&str> = list
        .iter()
        .map(|m| m["createdAt"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");

    // Participations: the guest joins all 22 live and 22 scheduled + 8.
    for m in live.iter().chain(scheduled.iter()) {
        app.join(&guest, &code_of(m)).await;
    }
    let list = app
        .get(&format!("/api/users/{guest_id}/participations"), &guest)
        .await;
    let list = list.body["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 44);
    assert_eq!(list[0]["meeting"]["title"], "s20", "newest join first");
    assert_eq!(list[0]["meeting"]["host"]["name"], "Host");
    let joined: Vec<&str> = list
        .iter()
        .map(|p| p["joinedAt"].as_str().unwrap())
        .collect();
    assert!(joined.windows(2).all(|w| w[0] >= w[1]), "{joined:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_hosted_meetings_by_status() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Host").await;
    let path = format!("/api/users/{host_id}/stats");
    assert_eq!(
        app.get(&path, &host).await.body["data"],
        json!({"total": 0, "live": 0, "scheduled": 0, "ended": 0})
    );
    app.create_meeting(&host, "a").await;
    app.create_meeting(&host, "b").await;
    let live = id_of(&app.create_live_meeting(&host, "c").await);
    let ended = id_of(&app.create_live_meeting(&host, "d").await);
    app.post(&format!("/api/meetings/{ended}/end"), &host, json!({}))
        .await;
    let _ = live;
    assert_eq!(
        app.get(&path, &host).await.body["data"],
        json!({"total": 4, "live": 1, "scheduled": 2, "ended": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_reads_skip_postgres() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Cached").await;
    let id = id_of(&meeting);
    let (_, guest) = app.user("Guest").await;
    app.join(&guest, &code_of(&meeting)).await;
    let reads = [
        (format!("/api/meetings/{id}"), guest.clone()),
        (format!("/api/meetings/{id}/participants"), guest.clone()),
        (
            format!("/api/meetings/{id}/participants/count"),
            guest.clone(),
        ),
        ("/api/meetings/live".to_owned(), guest.clone()),
        ("/api/meetings/scheduled".to_owned(), guest.clone()),
        (format!("/api/users/{host_id}/meetings"), host.clone()),
        (format!("/api/users/{host_id}/participations"), host.clone()),
        (format!("/api/users/{host_id}/stats"), host.clone()),
    ];
    let mut first = Vec::new();
    for (path, token) in &reads {
        let resp = app.get(path, token).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}: {:?}", resp.body);
        first.push(resp.body);
    }
    let checkouts = app.meeting_db.checkouts();
    let user_checkouts = app.user_db.checkouts();
    for ((path, token), before) in reads.iter().zip(&first) {
        let resp = app.get(path, token).await;
        assert_eq!(&resp.body, before, "{path}");
    }
    assert_eq!(
        app.meeting_db.checkouts(),
        checkouts,
        "hits must not touch Postgres"
    );
    assert_eq!(app.user_db.checkouts(), user_checkouts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rule_by_rule() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Host").await;
    let (_, participant) = app.user("Participant").await;
    let (stranger_id, stranger) = app.user("Stranger").await;
    let meeting = app.create_meeting(&host, "Private").await;
    let (id, code) = (id_of(&meeting), code_of(&meeting));
    app.join(&participant, &code).await;
    let m = format!("/api/meetings/{id}");

    // Host only: PATCH, DELETE, start, end. A participant is refused; a
    // stranger is told the meeting does not exist (see
    // `strangers_cannot_tell_an_existing_meeting_from_a_missing_one`).
    for (token, status, code) in [
        (&participant, 403, "PERMISSION_DENIED"),
        (&stranger, 404, "NOT_FOUND"),
    ] {
        let resp = app.patch(&m, token, json!({"title": "Mine now"})).await;
        assert_error(&resp, status, code);
        assert_error(&app.delete(&m, token).await, status, code);
        for action in ["start", "end"] {
            let resp = app.post(&format!("{m}/{action}"), token, json!({})).await;
            assert_error(&resp, status, code);
        }
    }
    // Host or participant: details, participants, count.
    for path in [
        m.clone(),
        format!("{m}/participants"),
        format!("{m}/participants/count"),
    ] {
        assert_error(&app.get(&path, &stranger).await, 404, "NOT_FOUND");
        assert_eq!(
            app.get(&path, &participant).await.status,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(app.get(&path, &host).await.status, StatusCode::OK, "{path}");
    }
    // Participant: leave.
    let resp = app.post(&format!("{m}/leave"), &stranger, json!({})).await;
    assert_error(&resp, 404, "NOT_FOUND");
    // A participant who left may still read what they took part in.
    let left = app
        .post(&format!("{m}/leave"), &participant, json!({}))
        .await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert_eq!(app.get(&m, &participant).await.status, StatusCode::OK);

    // Self only: a user's meetings, participations and stats.
    for view in ["meetings", "participations", "stats"] {
        let other = format!("/api/users/{host_id}/{view}");
        assert_error(&app.get(&other, &stranger).await, 403, "PERMISSION_DENIED");
        let own = format!("/api/users/{stranger_id}/{view}");
        assert_eq!(app.get(&own, &stranger).await.status, StatusCode::OK);
    }
    // Any user: live and scheduled lists, join.
    assert_eq!(
        app.get("/api/meetings/live", &stranger).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/meetings/scheduled", &stranger).await.status,
        StatusCode::OK
    );

    // No token: 401 everywhere. An admin token is nobody's: 403.
    for (method, path) in [
        (Method::POST, "/api/meetings".to_owned()),
        (Method::GET, m.clone()),
        (Method::GET, "/api/meetings/live".to_owned()),
        (Method::POST, "/api/meetings/join".to_owned()),
    ] {
        let resp = app.call(method, &path, None, Some(json!({}))).await;
        assert_error(&resp, 401, "UNAUTHENTICATED");
    }
    assert_error(
        &app.get(&m, &app.admin_token()).await,
        403,
        "PERMISSION_DENIED",
    );
    // A token for an id that is no registered user cannot host or join.
    let ghost = app.token_for(&uuid::Uuid::new_v4().to_string());
    let resp = app
        .post(
            "/api/meetings",
            &ghost,
            json!({"title": "x", "status": "LIVE"}),
        )
        .await;
    assert_error(&resp, 403, "PERMISSION_DENIED");
    let resp = app
        .post("/api/meetings/join", &ghost, json!({"inviteCode": code}))
        .await;
    assert_error(&resp, 403, "PERMISSION_DENIED");
    // Nothing the refused calls tried took effect.
    let details = app.get(&m, &host).await.body["data"].clone();
    assert_eq!(details["title"], "Private");
    assert_eq!(details["status"], "SCHEDULED");
}

/// Asserts a 400 whose message starts with `field`.
fn assert_field_error(resp: &common::Response, field: &str, case: &str) {
    assert_error(resp, 400, "INVALID_ARGUMENT");
    let message = resp.body["message"].as_str().unwrap();
    assert!(message.starts_with(field), "{case}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user("Host").await;
    let id = id_of(&app.create_meeting(&token, "Target").await);

    // Bad ids, on every route that takes one.
    for bad in ["not-a-uuid", "42", "00000000-0000-0000-0000"] {
        for (method, path) in [
            (Method::GET, format!("/api/meetings/{bad}")),
            (Method::PATCH, format!("/api/meetings/{bad}")),
            (Method::DELETE, format!("/api/meetings/{bad}")),
            (Method::POST, format!("/api/meetings/{bad}/start")),
            (Method::POST, format!("/api/meetings/{bad}/end")),
            (Method::POST, format!("/api/meetings/{bad}/leave")),
            (Method::GET, format!("/api/meetings/{bad}/participants")),
            (
                Method::GET,
                format!("/api/meetings/{bad}/participants/count"),
            ),
            (Method::GET, format!("/api/users/{bad}/meetings")),
            (Method::GET, format!("/api/users/{bad}/participations")),
            (Method::GET, format!("/api/users/{bad}/stats")),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"title": "x"}));
            let resp = app.call(method.clone(), &path, Some(&token), body).await;
            assert_field_error(&resp, "id:", &format!("{method} {path}"));
        }
    }

    // Create.
    let create_cases = [
        (json!({"title": "", "scheduledAt": later(1)}), "title:"),
        (json!({"title": "   ", "scheduledAt": later(1)}), "title:"),
        (
            json!({"title": "x".repeat(201), "scheduledAt": later(1)}),
            "title:",
        ),
        (json!({"title": 7, "scheduledAt": later(1)}), "title:"),
        (json!({"scheduledAt": later(1)}), "title:"),
        (
            json!({"title": "t", "description": "d".repeat(2001), "scheduledAt": later(1)}),
            "description:",
        ),
        (
            json!({"title": "t", "scheduledAt": "tomorrow"}),
            "scheduledAt:",
        ),
        (
            json!({"title": "t", "scheduledAt": "2030-02-30T10:00:00Z"}),
            "scheduledAt:",
        ),
        (
            json!({"title": "t", "scheduledAt": 1_900_000_000}),
            "scheduledAt:",
        ),
        (
            json!({"title": "t", "scheduledAt": "2020-01-01T10:00:00Z"}),
            "scheduledAt:",
        ),
        (json!({"title": "t"}), "scheduledAt:"),
        (
            json!({"title": "t", "scheduledAt": later(1), "status": "PAUSED"}),
            "status:",
        ),
        (
            json!({"title": "t", "scheduledAt": later(1), "status": "live"}),
            "status:",
        ),
        (
            json!({"title": "t", "scheduledAt": later(1), "status": "ENDED"}),
            "status:",
        ),
    ];
    for (body, field) in create_cases {
        let resp = app.post("/api/meetings", &token, body.clone()).await;
        assert_field_error(&resp, field, &body.to_string());
    }
    let resp = app
        .post(
            "/api/meetings",
            &token,
            json!({"title": "t", "scheduledAt": later(1), "hostId": user_id}),
        )
        .await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    assert!(resp.body["message"].as_str().unwrap().contains("hostId"));
    // A 200-character title is fine; 201 is not (above).
    let resp = app
        .post(
            "/api/meetings",
            &token,
            json!({"title": "é".repeat(200), "scheduledAt": later(1)}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);

    // Update.
    let path = format!("/api/meetings/{id}");
    let update_cases = [
        (json!({"title": ""}), "title:"),
        (json!({"title": "x".repeat(201)}), "title:"),
        (json!({"title": null}), "title:"),
        (json!({"description": 5}), "description:"),
        (json!({"scheduledAt": "soon"}), "scheduledAt:"),
        (
            json!({"scheduledAt": "2001-01-01T00:00:00Z"}),
            "scheduledAt:",
        ),
        (json!({"scheduledAt": null}), "scheduledAt:"),
        (json!({"status": "CANCELLED"}), "status:"),
        (json!({"status": null}), "status:"),
        (json!({"rotateInviteCode": "yes"}), "rotateInviteCode:"),
        (json!({}), "nothing to update"),
    ];
    for (body, field) in update_cases {
        let resp = app.patch(&path, &token, body.clone()).await;
        assert_field_error(&resp, field, &body.to_string());
    }
    let resp = app.patch(&path, &token, json!({"inviteCode": "x"})).await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    assert!(
        resp.body["message"]
            .as_str()
            .unwrap()
            .contains("inviteCode")
    );

    // Join.
    for (body, field) in [
        (json!({}), "inviteCode:"),
        (json!({"inviteCode": ""}), "inviteCode:"),
        (json!({"inviteCode": "has space  1"}), "inviteCode:"),
        (json!({"inviteCode": ["x"]}), "inviteCode:"),
    ] {
        let resp = app.post("/api/meetings/join", &token, body.clone()).await;
        assert_field_error(&resp, field, &body.to_string());
    }
    // Not JSON at all: 400, never a 500.
    let resp = app
        .http
        .post(format!("{}/api/meetings", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // None of it changed the meeting.
    let details = app.get(&path, &token).await.body["data"].clone();
    assert_eq!(details["title"], "Target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_meetings_are_404_and_the_repeat_skips_postgres() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("Someone").await;
    let path = format!("/api/meetings/{}", uuid::Uuid::new_v4());
    let reads = ["", "/participants", "/participants/count"];
    for suffix in reads {
        let resp = app.get(&format!("{path}{suffix}"), &token).await;
        assert_error(&resp, 404, "NOT_FOUND");
    }
    // Answered from not-found markers from now on.
    let checkouts = app.meeting_db.checkouts();
    for suffix in reads {
        let resp = app.get(&format!("{path}{suffix}"), &token).await;
        assert_error(&resp, 404, "NOT_FOUND");
    }
    assert_eq!(app.meeting_db.checkouts(), checkouts);
    for action in ["start", "end", "leave"] {
        let resp = app
            .post(&format!("{path}/{action}"), &token, json!({}))
            .await;
        assert_error(&resp, 404, "NOT_FOUND");
    }
    assert_error(
        &app.patch(&path, &token, json!({"title": "x"})).await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_docs_cover_the_meeting_service() {
    let app = TestApp::spawn().await;
    let resp = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(
        resp.body["data"]["services"]
            [huddle_proto::meeting::v1::meeting_service_server::SERVICE_NAME],
        "SERVING"
    );
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    for (path, method) in [
        ("/api/meetings", "post"),
        ("/api/meetings/{id}", "get"),
        ("/api/meetings/{id}", "patch"),
        ("/api/meetings/{id}", "delete"),
        ("/api/meetings/{id}/start", "post"),
        ("/api/meetings/{id}/end", "post"),
        ("/api/meetings/join", "post"),
        ("/api/meetings/{id}/leave", "post"),
        ("/api/meetings/live", "get"),
        ("/api/meetings/scheduled", "get"),
        ("/api/meetings/{id}/participants", "get"),
        ("/api/meetings/{id}/participants/count", "get"),
        ("/api/users/{id}/meetings", "get"),
        ("/api/users/{id}/participations", "get"),
        ("/api/users/{id}/stats", "get"),
    ] {
        assert!(
            doc.body["paths"][path][method].is_object(),
            "{method} {path} missing from OpenAPI"
        );
    }
}
