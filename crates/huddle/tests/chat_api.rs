//! Chat over HTTP: the SPEC §5 rows that involve chat end to end (a post
//! appends to the cached window and refreshes the count; a profile update
//! shows in the window; a meeting delete leaves no chat key and no row),
//! history paging, authorization rule by rule and bad input for every route.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cache_core::{CacheKey, RECENT_CHATS_LIMIT};
use common::{TestApp, assert_error, eventually};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use huddle_proto::chat::v1::{PostMessageRequest, chat_service_client::ChatServiceClient};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// A LIVE meeting with its host and one joined participant:
/// `(meeting id, host token, participant id, participant token)`.
async fn live_meeting(app: &TestApp) -> (String, String, String, String) {
    let (_, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Chatty").await;
    let (guest_id, guest) = app.user("Guest").await;
    app.join(&guest, meeting["inviteCode"].as_str().unwrap())
        .await;
    (
        meeting["id"].as_str().unwrap().to_owned(),
        host,
        guest_id,
        guest,
    )
}

async fn data(app: &TestApp, path: &str, token: &str) -> Value {
    let resp = app.get(path, token).await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {:?}", resp.body);
    resp.body["data"].clone()
}

fn texts(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

fn window_key(meeting: &str) -> String {
    CacheKey::recent_chats(meeting.parse().unwrap(), RECENT_CHATS_LIMIT)
        .path()
        .to_owned()
}

fn count_key(meeting: &str) -> String {
    CacheKey::meeting_chat_count(meeting.parse().unwrap())
        .path()
        .to_owned()
}

async fn rows(app: &TestApp, meeting: &str) -> i64 {
    use chat_service::schema::chat_messages::dsl;
    let meeting: Uuid = meeting.parse().unwrap();
    dsl::chat_messages
        .filter(dsl::meeting_id.eq(meeting))
        .count()
        .get_result(&mut *app.chat_db.conn().await.unwrap())
        .await
        .unwrap()
}

/// SPEC §5 "chat message": with the window and the count cached, a post is
/// appended to the cached window (still cached, not reloaded) and the count
/// is fresh in the meeting's details. Seen to fail with the rule's
/// `Append(RecentChats)` applying nothing (the cached window still held
/// only `first`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_chat_message_appends_to_the_window_and_refreshes_the_count() {
    let app = TestApp::spawn().await;
    let (meeting, host, _, guest) = live_meeting(&app).await;
    app.post_chat(&host, &meeting, "first").await;
    let chats = format!("/api/meetings/{meeting}/chats");
    let details = format!("/api/meetings/{meeting}");
    assert_eq!(texts(&data(&app, &chats, &guest).await), ["first"]);
    assert_eq!(
        data(&app, &details, &guest).await["_count"]["chatMessages"],
        1
    );
    app.assert_cached(&[window_key(&meeting), count_key(&meeting)])
        .await;

    let posted = app.post_chat(&guest, &meeting, "  second\nline  ").await;
    assert_eq!(posted["message"], "second\nline");
    assert_eq!(posted["user"]["name"], "Guest");
    // Appended in place: the window is still cached, now with both.
    app.assert_cached(&[window_key(&meeting)]).await;
    let (raw, _) = app
        .cache
        .inspect(&window_key(&meeting))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.contains("second\\nline"), "{raw}");
    let checkouts = app.chat_db.checkouts();
    let window = data(&app, &chats, &host).await;
    assert_eq!(texts(&window), ["first", "second\nline"]);
    assert_eq!(app.chat_db.checkouts(), checkouts, "served from Redis");
    assert_eq!(window[1]["user"]["name"], "Guest");
    assert_eq!(
        data(&app, &details, &host).await["_count"]["chatMessages"],
        2
    );
}

/// SPEC §5 "user profile update" for chat: the window stores poster ids and
/// the names come from user-service's `user` keys, so a rename shows at
/// once while the window itself stays cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_profile_update_shows_the_new_name_in_the_window() {
    let app = TestApp::spawn().await;
    let (meeting, host, guest_id, guest) = live_meeting(&app).await;
    app.post_chat(&guest, &meeting, "hello").await;
    let chats = format!("/api/meetings/{meeting}/chats");
    assert_eq!(data(&app, &chats, &host).await[0]["user"]["name"], "Guest");
    app.assert_cached(&[window_key(&meeting)]).await;
    let renamed = app
        .patch(
            &format!("/api/users/{guest_id}"),
            &guest,
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(
        data(&app, &chats, &host).await[0]["user"]["name"],
        "Renamed"
    );
    let page = data(&app, &format!("{chats}/history"), &host).await;
    assert_eq!(page["messages"][0]["user"]["name"], "Renamed");
}

/// SPEC §5 "meeting delete" for chat: once the cascade has run, no chat key
/// and no row is left; a post that reaches chat-service after the delete
/// (racing it past the gateway's access check) is refused and leaves no
/// row. Seen to fail with `next_sent_at`'s tombstone check removed (the
/// late post was accepted and stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_meeting_delete_leaves_no_chat_key_and_no_row() {
    let app = TestApp::spawn().await;
    let (meeting, host, guest_id, guest) = live_meeting(&app).await;
    for n in 0..3 {
        app.post_chat(&guest, &meeting, &format!("m{n}")).await;
    }
    data(&app, &format!("/api/meetings/{meeting}/chats"), &host).await;
    data(&app, &format!("/api/meetings/{meeting}"), &host).await;
    app.assert_cached(&[window_key(&meeting), count_key(&meeting)])
        .await;
    assert_eq!(rows(&app, &meeting).await, 3);

    let deleted = app.delete(&format!("/api/meetings/{meeting}"), &host).await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert!(
        eventually(Duration::from_secs(10), async || rows(&app, &meeting).await
            == 0)
        .await,
        "the cascade deletes the messages"
    );
    assert!(
        app.keys_containing(&meeting)
            .await
            .iter()
            .all(|k| !k.contains(":chats"))
    );

    let mut chat = ChatServiceClient::connect(format!("http://{}", app.chat_addr))
        .await
        .unwrap();
    let late = chat
        .post_message(PostMessageRequest {
            meeting_id: meeting.clone(),
            user_id: guest_id,
            message: "too late".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::NotFound);
    assert_eq!(rows(&app, &meeting).await, 0);
    let gone = app
        .get(&format!("/api/meetings/{meeting}/chats"), &guest)
        .await;
    assert_error(&gone, 404, "NOT_FOUND");
}

/// History pages back through 1,000 messages, newest first, with no gap
/// and no overlap, each page saying where the next starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_through_a_thousand_messages() {
    let app = TestApp::spawn().await;
    let (meeting, host, _, guest) = live_meeting(&app).await;
    let posters = [host.clone(), guest.clone()];
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let (base, token, meeting) =
                (app.base.clone(), posters[t % 2].clone(), meeting.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0..100 {
                    let resp = http
                        .post(format!("{base}/api/meetings/{meeting}/chats"))
                        .bearer_auth(&token)
                        .json(&json!({"message": format!("t{t}-{n}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), StatusCode::CREATED);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let history = format!("/api/meetings/{meeting}/chats/history");
    let first = data(&app, &history, &guest).await;
    assert_eq!(
        first["messages"].as_array().unwrap().len(),
        50,
        "default limit"
    );

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("{history}?limit=100&before={b}"),
            None => format!("{history}?limit=100"),
        };
        let page = data(&app, &path, &host).await;
        for m in page["messages"].as_array().unwrap() {
            seen.push((
                m["sentAt"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["nextBefore"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    let mut unique: Vec<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1000, "no overlap");
    assert!(
        seen.windows(2).all(|w| w[0].0 > w[1].0),
        "newest first, sentAt strictly decreasing within a meeting"
    );
    assert_eq!(rows(&app, &meeting).await, 1000);
}

/// Authorization rule by rule: the host and a participant read and post;
/// a stranger gets the missing meeting's 404 everywhere; a participant who
/// left may read but not post; nobody posts to a meeting that is not LIVE;
/// an admin token is nobody's participant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rule_by_rule() {
    let app = TestApp::spawn().await;
    let (meeting, host, _, guest) = live_meeting(&app).await;
    let (_, stranger) = app.user("Stranger").await;
    let chats = format!("/api/meetings/{meeting}/chats");
    let reads = [
        chats.clone(),
        format!("{chats}/history"),
        format!("/api/meetings/{meeting}/chats/stream"),
    ];
    app.post_chat(&host, &meeting, "host speaks").await;
    app.post_chat(&guest, &meeting, "guest speaks").await;
    for path in &reads[..2] {
        data(&app, path, &host).await;
        data(&app, path, &guest).await;
    }
    for path in &reads {
        assert_error(&app.get(path, &stranger).await, 404, "NOT_FOUND");
        assert_error(
            &app.get(path, &app.admin_token()).await,
            403,
            "PERMISSION_DENIED",
        );
    }
    let post = |token: String| {
        let (app, chats) = (&app, chats.clone());
        async move { app.post(&chats, &token, json!({"message": "hi"})).await }
    };
    assert_error(&post(stranger.clone()).await, 404, "NOT_FOUND");
    assert_error(&post(app.admin_token()).await, 403, "PERMISSION_DENIED");

    let left = app
        .post(&format!("/api/meetings/{meeting}/leave"), &guest, json!({}))
        .await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert_error(&post(guest.clone()).await, 403, "PERMISSION_DENIED");
    assert_eq!(
        texts(&data(&app, &chats, &guest).await).len(),
        2,
        "a past participant reads"
    );

    let scheduled = app.create_meeting(&host, "Later").await;
    let scheduled_chats = format!("/api/meetings/{}/chats", scheduled["id"].as_str().unwrap());
    let refused = app
        .post(&scheduled_chats, &host, json!({"message": "early"}))
        .await;
    assert_error(&refused, 403, "PERMISSION_DENIED");
    let ended = app
        .post(&format!("/api/meetings/{meeting}/end"), &host, json!({}))
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{:?}", ended.body);
    assert_error(&post(host.clone()).await, 403, "PERMISSION_DENIED");
    assert_eq!(
        texts(&data(&app, &chats, &host).await).len(),
        2,
        "an ended meeting is read"
    );
}

/// Bad input on every route: a 400 naming the field, never a 500, and
/// nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_for_every_route() {
    let app = TestApp::spawn().await;
    let (meeting, host, _, _) = live_meeting(&app).await;
    let chats = format!("/api/meetings/{meeting}/chats");
    for (body, field) in [
        (json!({}), "message"),
        (json!({"message": null}), "message"),
        (json!({"message": ""}), "message"),
        (json!({"message": "   \n "}), "message"),
        (json!({"message": "a".repeat(2001)}), "message"),
        (json!({"message": "nul\u{0}here"}), "message"),
        (json!({"message": "esc\u{1b}[31m"}), "message"),
        (json!({"message": 42}), "message"),
        (json!({"message": ["x"]}), "message"),
    ] {
        let resp = app.post(&chats, &host, body.clone()).await;
        assert_error(&resp, 400, "INVALID_ARGUMENT");
        let message = resp.body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let unknown = app
        .post(&chats, &host, json!({"message": "x", "extra": 1}))
        .await;
    assert_error(&unknown, 400, "INVALID_ARGUMENT");
    let raw = app
        .http
        .post(format!("{}{chats}", app.base))
        .bearer_auth(&host)
        .header("content-type", "application/json")
        .body("{\"message\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    // The longest message passes (2000 characters, counted as characters).
    app.post_chat(&host, &meeting, &"é".repeat(2000)).await;
    assert_eq!(rows(&app, &meeting).await, 1);

    for path in [
        "/api/meetings/not-a-uuid/chats".to_owned(),
        "/api/meetings/not-a-uuid/chats/history".to_owned(),
        "/api/meetings/not-a-uuid/chats/stream".to_owned(),
        format!("{chats}/history?before=nope"),
        format!("{chats}/history?limit=0"),
        format!("{chats}/history?limit=101"),
        format!("{chats}/history?limit=ten"),
        format!("{chats}/history?limit=-1"),
    ] {
        assert_error(&app.get(&path, &host).await, 400, "INVALID_ARGUMENT");
    }
    let bad_resume = app
        .http
        .get(format!("{}{chats}/stream", app.base))
        .bearer_auth(&host)
        .header("Last-Event-ID", "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_resume.status(), StatusCode::BAD_REQUEST);
    let unknown_resume = app
        .http
        .get(format!("{}{chats}/stream", app.base))
        .bearer_auth(&host)
        .header("Last-Event-ID", Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_resume.status(), StatusCode::NOT_FOUND);
    let unknown_before = format!("{chats}/history?before={}", Uuid::new_v4());
    assert_error(&app.get(&unknown_before, &host).await, 404, "NOT_FOUND");
    let no_token = app
        .call(reqwest::Method::GET, &format!("{chats}/stream"), None, None)
        .await;
    assert_error(&no_token, 401, "UNAUTHENTICATED");
    let bad_token = app
        .call(
            reqwest::Method::GET,
            &format!("{chats}/stream?access_token=not.a.jwt"),
            None,
            None,
        )
        .await;
    assert_error(&bad_token, 401, "UNAUTHENTICATED");
}
