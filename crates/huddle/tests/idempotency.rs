//! `Idempotency-Key` on every creating POST (SPEC §3), end to end through
//! the gateway, and writes that run to their end when their request is cut
//! off mid-commit (issue 19, finding 4, first hole).
//!
//! Recording creation routes do not exist yet; when they land they take the
//! key the same way (`huddle_serve::idempotency`).

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, TestOptions, eventually, later};
use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use huddle_db::Database;
use huddle_proto::{
    chat::v1::{PostMessageRequest, chat_service_client::ChatServiceClient},
    user::v1::{UpdateUserRequest, user_service_client::UserServiceClient},
};
use reqwest::{StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "Idempotency-Key";

/// One POST, with `key` as the header when given.
async fn post(
    app: &TestApp,
    path: &str,
    token: &str,
    key: Option<HeaderValue>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        req = req.header(KEY, key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn key(raw: &str) -> Option<HeaderValue> {
    Some(HeaderValue::from_str(raw).unwrap())
}

fn fresh_key() -> Option<HeaderValue> {
    key(&format!("retry-{}", Uuid::new_v4()))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &Database, sql: &str) -> i64 {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn execute(db: &Database, sql: &str) {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

/// A creating route, a body for it, another body, and how to count what it
/// wrote.
struct Route {
    path: String,
    token: String,
    /// The user behind `token` (none for the admin).
    caller: String,
    body: Value,
    other_body: Value,
    db: Database,
    rows: String,
}

/// The four creating routes, each set up for one caller.
async fn routes(app: &TestApp) -> Vec<Route> {
    let (host_id, host) = app.user("Host").await;
    let live = app.create_live_meeting(&host, "Live").await;
    let live_id = live["id"].as_str().unwrap().to_owned();
    let scheduled = app.create_meeting(&host, "To join").await;
    let (guest_id, guest) = app.user("Guest").await;
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    vec![
        Route {
            path: "/api/users".into(),
            token: app.admin_token(),
            caller: String::new(),
            body: json!({"name": "Ada", "email": email}),
            other_body: json!({"name": "Ada", "email": format!("other-{email}")}),
            db: app.user_db.clone(),
            rows: "SELECT count(*) AS n FROM users WHERE name = 'Ada'".into(),
        },
        Route {
            path: "/api/meetings".into(),
            token: host.clone(),
            caller: host_id.clone(),
            body: json!({"title": "Standup", "scheduledAt": later(3)}),
            other_body: json!({"title": "Retro", "scheduledAt": later(3)}),
            db: app.meeting_db.clone(),
            rows: format!(
                "SELECT count(*) AS n FROM meetings WHERE host_id = '{host_id}' \
                 AND title IN ('Standup', 'Retro')"
            ),
        },
        Route {
            path: "/api/meetings/join".into(),
            token: guest,
            caller: guest_id.clone(),
            body: json!({"inviteCode": scheduled["inviteCode"]}),
            other_body: json!({"inviteCode": live["inviteCode"]}),
            db: app.meeting_db.clone(),
            rows: format!("SELECT count(*) AS n FROM participants WHERE user_id = '{guest_id}'"),
        },
        Route {
            path: format!("/api/meetings/{live_id}/chats"),
            token: host,
            caller: host_id,
            body: json!({"message": "hello once"}),
            other_body: json!({"message": "hello twice"}),
            db: app.chat_db.clone(),
            rows: format!("SELECT count(*) AS n FROM chat_messages WHERE meeting_id = '{live_id}'"),
        },
    ]
}

/// A retry with the same key and body gets the first answer (status and
/// body) and writes nothing; the same key with another body is 409.
///
/// Seen to fail with the store off (`idempotency::claim` answering "new"
/// and `keep` doing nothing), each route checked: the user retries answered
/// 409 CONFLICT (email taken), the meeting retries made 3 meetings, the join
/// retries answered `joinedNow: false`, the chat retries made 3 messages;
/// and every other body under the key was accepted (201/200), not 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_creating_post_replays_its_first_answer_and_writes_once() {
    let app = TestApp::spawn().await;
    for route in routes(&app).await {
        let k = fresh_key();
        let first = post(&app, &route.path, &route.token, k.clone(), &route.body).await;
        assert!(first.0.is_success(), "{}: {first:?}", route.path);
        let rows = count(&route.db, &route.rows).await;
        for _ in 0..2 {
            let retry = post(&app, &route.path, &route.token, k.clone(), &route.body).await;
            assert_eq!(retry, first, "{}: the retry got another answer", route.path);
        }
        assert_eq!(count(&route.db, &route.rows).await, rows, "{}", route.path);

        let (status, body) = post(&app, &route.path, &route.token, k, &route.other_body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{}: {body}", route.path);
        assert_eq!(body["code"], "IDEMPOTENCY_KEY_REUSED", "{}", route.path);
        assert!(body["message"].as_str().unwrap().contains(KEY), "{body}");
        assert_eq!(count(&route.db, &route.rows).await, rows, "{}", route.path);
    }
}

/// A key is its caller's: another caller's same key is another request.
///
/// Seen to fail with a constant caller in `IdempotencyKey::of`: the second
/// admin's user create answered 409 IDEMPOTENCY_KEY_REUSED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_from_another_caller_does_not_collide() {
    let app = TestApp::spawn().await;
    let other_admin =
        gateway::auth::mint_token(common::SECRET, "ops-2", true, Duration::from_secs(600)).unwrap();
    let (_, other_user) = app.user("Other").await;
    // One key per route: the same caller's key on another operation is a
    // reuse (409), which is not what this test is about.
    for (i, route) in routes(&app).await.into_iter().enumerate() {
        let k = key(&format!("shared-key-{i}"));
        let first = post(&app, &route.path, &route.token, k.clone(), &route.body).await;
        assert!(first.0.is_success(), "{}: {first:?}", route.path);
        let other_token = if route.path == "/api/users" {
            &other_admin
        } else {
            &other_user
        };
        if route.path.ends_with("/chats") {
            // Only participants post: the other user's post is refused
            // before any key is looked at.
            continue;
        }
        let (status, body) = post(&app, &route.path, other_token, k, &route.other_body).await;
        assert!(status.is_success(), "{}: {status} {body}", route.path);
        assert_ne!(body, first.1, "{}", route.path);
    }
}

/// A key that is not 1..=255 visible ASCII characters is a 400 that names
/// the header, before anything is written.
///
/// Seen to fail with the gateway ignoring a malformed header (as if none
/// was sent): the user create with an empty key answered 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_a_400_naming_the_header() {
    let app = TestApp::spawn().await;
    let long = "k".repeat(256);
    let bad = [
        HeaderValue::from_static(""),
        HeaderValue::from_static("two words"),
        HeaderValue::from_str(&long).unwrap(),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"tab\tkey").unwrap(),
    ];
    for route in routes(&app).await {
        let rows = count(&route.db, &route.rows).await;
        for value in &bad {
            let (status, body) = post(
                &app,
                &route.path,
                &route.token,
                Some(value.clone()),
                &route.body,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{} {value:?}: {body}",
                route.path
            );
            assert_eq!(body["code"], "INVALID_ARGUMENT");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Idempotency-Key:"),
                "{body}"
            );
        }
        assert_eq!(count(&route.db, &route.rows).await, rows, "{}", route.path);
    }
}

/// Concurrent duplicates serialize on the key: exactly one write, and every
/// one of them gets its answer.
///
/// Seen to fail with the store off: 8 concurrent posts wrote 8 messages,
/// each with its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_write_once() {
    let app = TestApp::spawn().await;
    let routes = routes(&app).await;
    let chat = routes.last().unwrap();
    let rows = count(&chat.db, &chat.rows).await;
    let k = fresh_key();
    let answers = futures::future::join_all(
        (0..8).map(|_| post(&app, &chat.path, &chat.token, k.clone(), &chat.body)),
    )
    .await;
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::CREATED);
    assert_eq!(count(&chat.db, &chat.rows).await, rows + 1);
}

/// The key lives in Postgres, with the write: a retry while Redis is down,
/// and after it is back, still finds it.
///
/// Seen to fail with the store off: the retry while Redis was down posted a
/// second message (another id in the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_redis_was_down_finds_the_key() {
    let mut redis = huddle_testkit::TestRedis::start();
    let app = TestApp::spawn_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    let routes = routes(&app).await;
    let chat = routes.last().unwrap();
    let rows = count(&chat.db, &chat.rows).await;
    let k = fresh_key();
    redis.stop();
    let first = post(&app, &chat.path, &chat.token, k.clone(), &chat.body).await;
    assert_eq!(first.0, StatusCode::CREATED, "{first:?}");
    assert_eq!(
        post(&app, &chat.path, &chat.token, k.clone(), &chat.body).await,
        first
    );
    redis.restart();
    assert_eq!(
        post(&app, &chat.path, &chat.token, k, &chat.body).await,
        first
    );
    assert_eq!(count(&chat.db, &chat.rows).await, rows + 1);
}

/// Makes every COMMIT of a transaction that wrote `table` take `seconds`
/// (a deferred constraint trigger runs at COMMIT, before it completes): a
/// request cut off meanwhile is cancelled while its COMMIT is in flight.
async fn slow_commits(db: &Database, table: &str, seconds: f64) {
    execute(
        db,
        &format!(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON {table} \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        ),
    )
    .await;
}

/// A post whose client gave up while its COMMIT was in flight: the retry
/// with the same key finds the committed post and writes nothing.
///
/// Seen to fail with the store off: the retry posted a second message (2
/// rows where 1 was expected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_cancelled_request_finds_the_key() {
    let app = TestApp::spawn().await;
    let routes = routes(&app).await;
    let chat = routes.last().unwrap();
    let rows = count(&chat.db, &chat.rows).await;
    slow_commits(&chat.db, "chat_messages", 0.8).await;
    let k = fresh_key();
    let cut_off = app
        .http
        .post(format!("{}{}", app.base, chat.path))
        .bearer_auth(&chat.token)
        .header(KEY, k.clone().unwrap())
        .json(&chat.body)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(cut_off.is_err(), "the request was meant to be cut off");
    let committed = eventually(Duration::from_secs(5), async || {
        count(&chat.db, &chat.rows).await == rows + 1
    })
    .await;
    assert!(committed, "the cut-off post never committed");
    let (status, body) = post(&app, &chat.path, &chat.token, k, &chat.body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["message"], "hello once");
    assert_eq!(count(&chat.db, &chat.rows).await, rows + 1);

    // Cancelled by its gRPC deadline (the service drops the handler), then
    // retried through the gateway: the same request, the same key.
    let k = fresh_key();
    let meeting = chat.path.split('/').nth(3).unwrap();
    let mut grpc = ChatServiceClient::connect(format!("http://{}", app.chat_addr))
        .await
        .unwrap();
    let mut cut = tonic::Request::new(PostMessageRequest {
        meeting_id: meeting.to_owned(),
        user_id: chat.caller.clone(),
        message: "hello once".into(),
    });
    cut.set_timeout(Duration::from_millis(200));
    cut.metadata_mut().insert(
        "idempotency-key",
        k.clone().unwrap().to_str().unwrap().parse().unwrap(),
    );
    assert!(grpc.post_message(cut).await.is_err(), "meant to be cut off");
    let committed = eventually(Duration::from_secs(5), async || {
        count(&chat.db, &chat.rows).await == rows + 2
    })
    .await;
    assert!(committed, "the cancelled post never committed");
    let (status, body) = post(&app, &chat.path, &chat.token, k, &chat.body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(count(&chat.db, &chat.rows).await, rows + 2);
}

/// Keys older than 24 h are swept, younger ones kept.
///
/// Seen to fail with the sweep's age test inverted (`>`): the young key
/// went (0 left) and the old one stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_older_than_a_day_are_swept() {
    let app = TestApp::spawn().await;
    for age in ["25 hours", "23 hours"] {
        execute(
            &app.chat_db,
            &format!(
                "INSERT INTO idempotency_keys (caller, key, request_hash, answer, created_at) \
                 VALUES ('c', '{age}', '\\x00', '\\x00', now() - interval '{age}')"
            ),
        )
        .await;
    }
    let sweeper = huddle_serve::idempotency::Sweeper::new(app.chat_db.clone(), "chat");
    assert_eq!(sweeper.sweep().await.unwrap(), 1);
    let left = "SELECT count(*) AS n FROM idempotency_keys WHERE key = '23 hours'";
    assert_eq!(count(&app.chat_db, left).await, 1);
    let all = "SELECT count(*) AS n FROM idempotency_keys";
    assert_eq!(count(&app.chat_db, all).await, 1);
}

/// A write cancelled while its COMMIT is in flight (its gRPC deadline
/// passes: tonic drops the handler) still applies its invalidation at once,
/// not at the outbox relay's next idle tick (5 s).
///
/// Seen to fail with `huddle_serve::to_completion` awaiting the write
/// inline instead of in its own task: "still served the old name 338ms
/// after "New" committed" (the relay's tick, up to 5 s later, applied it).
///
/// Not tested through HTTP: actix-web does not drop a handler whose HTTP/1
/// client went away (a variant cutting the HTTP client off at 200 ms passed
/// without the fix too), so a gateway request reaches a service's
/// cancellation only through the gRPC deadline the gateway sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_mid_commit_still_invalidates_at_once() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("Old").await;
    slow_commits(&app.user_db, "users", 0.8).await;
    let path = format!("/api/users/{id}");
    let name = async || app.get(&path, &token).await.body["data"]["name"].clone();
    let committed = format!("SELECT count(*) AS n FROM users WHERE id = '{id}' AND name = 'New'");

    // A deadline shorter than the COMMIT.
    assert_eq!(name().await, "Old"); // cached
    let mut grpc = UserServiceClient::connect(format!("http://{}", app.user_addr))
        .await
        .unwrap();
    let mut update = tonic::Request::new(UpdateUserRequest {
        id: id.clone(),
        name: Some("New".into()),
        image: None,
        clear_image: false,
    });
    update.set_timeout(Duration::from_millis(200));
    let code = grpc
        .update_user(update)
        .await
        .map(|_| ())
        .unwrap_err()
        .code();
    assert!(
        matches!(code, tonic::Code::Cancelled | tonic::Code::DeadlineExceeded),
        "{code:?}"
    );
    fresh_soon_after_commit(&app, &committed, "New", name).await;
}

/// Once `committed` counts 1 row, reads show `expected` within 300 ms.
async fn fresh_soon_after_commit(
    app: &TestApp,
    committed: &str,
    expected: &str,
    mut name: impl AsyncFnMut() -> Value,
) {
    let seen = eventually(Duration::from_secs(5), async || {
        count(&app.user_db, committed).await == 1
    })
    .await;
    assert!(seen, "the cut-off write never committed");
    let since = Instant::now();
    let fresh = eventually(Duration::from_millis(300), async || {
        name().await == expected
    })
    .await;
    assert!(
        fresh,
        "still served the old name {:?} after {expected:?} committed",
        since.elapsed()
    );
}

/// A replay answers the first write, but the cards it shows are another
/// service's data, composed per answer: a rename acknowledged between the
/// first join (or post) and its replay shows in the replay (SPEC §6: no
/// answer older than an acknowledged write).
///
/// Seen to fail with the kept answer returned as stored: the replayed join
/// showed the host's old name (`make chaos`, cancel phase, found it), and
/// so did the replayed post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_shows_cards_as_they_are_now() {
    let app = TestApp::spawn().await;
    let (host_id, host) = app.user("Host").await;
    let meeting = app.create_live_meeting(&host, "Replayed").await;
    let (guest_id, guest) = app.user("Guest").await;
    let join_body = json!({ "inviteCode": meeting["inviteCode"] });
    let chats = format!("/api/meetings/{}/chats", meeting["id"].as_str().unwrap());
    let (join_key, post_key) = (fresh_key(), fresh_key());
    let join = post(
        &app,
        "/api/meetings/join",
        &guest,
        join_key.clone(),
        &join_body,
    )
    .await;
    assert_eq!(join.0, StatusCode::OK, "{:?}", join.1);
    assert_eq!(join.1["data"]["meeting"]["host"]["name"], "Host");
    let posted = post(
        &app,
        &chats,
        &guest,
        post_key.clone(),
        &json!({ "message": "hi" }),
    )
    .await;
    assert_eq!(posted.0, StatusCode::CREATED, "{:?}", posted.1);
    assert_eq!(posted.1["data"]["user"]["name"], "Guest");
    for (id, token, name) in [
        (&host_id, &host, "Host v2"),
        (&guest_id, &guest, "Guest v2"),
    ] {
        let renamed = app
            .patch(&format!("/api/users/{id}"), token, json!({ "name": name }))
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    }
    let replayed = post(&app, "/api/meetings/join", &guest, join_key, &join_body).await;
    assert_eq!(
        replayed.1["data"]["participant"],
        join.1["data"]["participant"]
    );
    assert_eq!(replayed.1["data"]["meeting"]["host"]["name"], "Host v2");
    let replayed = post(&app, &chats, &guest, post_key, &json!({ "message": "hi" })).await;
    assert_eq!(replayed.1["data"]["id"], posted.1["data"]["id"]);
    assert_eq!(replayed.1["data"]["user"]["name"], "Guest v2");
}
