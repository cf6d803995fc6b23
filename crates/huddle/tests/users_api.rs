//! Every `/api/users…` route over HTTP, against the in-process gateway and
//! user service, with real Postgres and Redis.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_user_and_others_may_not() {
    let app = TestApp::spawn().await;
    let created = app.create_user("Ann Admin-Made", "Ann@Example.com").await;
    assert_eq!(created["name"], "Ann Admin-Made");
    assert_eq!(created["email"], "Ann@Example.com");
    assert!(created["image"].is_null());
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let body = json!({"name": "Bob", "email": "bob@example.com"});
    let user_token = app.token_for(created["id"].as_str().unwrap());
    let resp = app
        .call(
            Method::POST,
            "/api/users",
            Some(&user_token),
            Some(body.clone()),
        )
        .await;
    assert_error(&resp, 403, "PERMISSION_DENIED");
    let resp = app.call(Method::POST, "/api/users", None, Some(body)).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");

    // Emails are unique regardless of case.
    let resp = app
        .call(
            Method::POST,
            "/api/users",
            Some(&app.admin_token()),
            Some(json!({"name": "Ann Again", "email": "ann@EXAMPLE.com"})),
        )
        .await;
    assert_error(&resp, 409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rejects_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let cases = [
        (json!({"name": "A", "email": "not-an-email"}), "email"),
        (json!({"name": "", "email": "a@b.io"}), "name"),
        (json!({"name": "x".repeat(101), "email": "a@b.io"}), "name"),
        (
            json!({"name": "A", "email": "a@b.io", "image": "ftp://x/y.png"}),
            "image",
        ),
        (
            json!({"name": "A", "email": "a@b.io", "role": "admin"}),
            "role",
        ),
        (json!({"email": "a@b.io"}), "name"),
    ];
    for (body, field) in cases {
        let resp = app
            .call(Method::POST, "/api/users", Some(&admin), Some(body.clone()))
            .await;
        assert_error(&resp, 400, "INVALID_ARGUMENT");
        let message = resp.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{body} -> {message}");
    }
    let huge = json!({"name": "A", "email": "a@b.io", "image": "x".repeat(70_000)});
    let resp = app
        .call(Method::POST, "/api/users", Some(&admin), Some(huge))
        .await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");
    // Nothing was stored by any of the rejected calls.
    let resp = app.get("/api/users/by-email?email=a@b.io", &admin).await;
    assert_error(&resp, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_read_is_a_cache_hit() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Cache Hit", "hit@example.com").await;
    let id = user["id"].as_str().unwrap();
    let token = app.token_for(id);
    let hits_line = "huddle_cache_lookups_total{key=\"user\",result=\"hit\"}";

    let first = app.get(&format!("/api/users/{id}"), &token).await;
    assert_eq!(first.status, StatusCode::OK);
    let hits_before = app.metric(hits_line).await;
    let checkouts = app.user_db.checkouts();

    let second = app.get(&format!("/api/users/{id}"), &token).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, first.body);
    assert_eq!(app.metric(hits_line).await, hits_before + 1.0);
    assert_eq!(
        app.user_db.checkouts(),
        checkouts,
        "a hit must not touch Postgres"
    );

    let keys = app.cache.scan("user:*", 100).await.unwrap();
    assert!(
        keys.contains(&app.cache.redis_key(&format!("user:{id}"))),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_shown_to_self_and_admin_only() {
    let app = TestApp::spawn().await;
    let ann = app.create_user("Ann", "ann@example.com").await;
    let bob = app.create_user("Bob", "bob@example.com").await;
    let path = format!("/api/users/{}", ann["id"].as_str().unwrap());

    let as_self = app
        .get(&path, &app.token_for(ann["id"].as_str().unwrap()))
        .await;
    assert_eq!(as_self.body["data"]["email"], "ann@example.com");
    let as_admin = app.get(&path, &app.admin_token()).await;
    assert_eq!(as_admin.body["data"]["email"], "ann@example.com");
    let as_other = app
        .get(&path, &app.token_for(bob["id"].as_str().unwrap()))
        .await;
    assert_eq!(as_other.status, StatusCode::OK);
    assert_eq!(as_other.body["data"]["name"], "Ann");
    assert!(
        as_other.body["data"].get("email").is_none(),
        "{:?}",
        as_other.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_name_shows_up_by_id_and_by_email() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Old Name", "rename@example.com").await;
    let id = user["id"].as_str().unwrap();
    let token = app.token_for(id);
    let admin = app.admin_token();
    let by_id = format!("/api/users/{id}");
    let by_email = "/api/users/by-email?email=Rename@Example.com";

    // Warm both keys.
    assert_eq!(
        app.get(&by_id, &token).await.body["data"]["name"],
        "Old Name"
    );
    assert_eq!(
        app.get(by_email, &admin).await.body["data"]["name"],
        "Old Name"
    );

    let resp = app
        .call(
            Method::PATCH,
            &by_id,
            Some(&token),
            Some(json!({"name": "New Name"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["name"], "New Name");

    assert_eq!(
        app.get(&by_id, &token).await.body["data"]["name"],
        "New Name"
    );
    assert_eq!(
        app.get(by_email, &admin).await.body["data"]["name"],
        "New Name"
    );

    // Setting and clearing the image.
    let image = "https://img.example.com/a.png";
    let resp = app
        .call(
            Method::PATCH,
            &by_id,
            Some(&token),
            Some(json!({"image": image})),
        )
        .await;
    assert_eq!(resp.body["data"]["image"], image);
    assert_eq!(app.get(&by_id, &token).await.body["data"]["image"], image);
    let resp = app
        .call(
            Method::PATCH,
            &by_id,
            Some(&token),
            Some(json!({"image": null})),
        )
        .await;
    assert!(resp.body["data"]["image"].is_null(), "{:?}", resp.body);
    assert!(app.get(&by_id, &token).await.body["data"]["image"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_is_for_self_only_and_validated() {
    let app = TestApp::spawn().await;
    let ann = app.create_user("Ann", "ann@example.com").await;
    let bob = app.create_user("Bob", "bob@example.com").await;
    let ann_path = format!("/api/users/{}", ann["id"].as_str().unwrap());
    let bob_token = app.token_for(bob["id"].as_str().unwrap());
    let ann_token = app.token_for(ann["id"].as_str().unwrap());

    let resp = app
        .call(
            Method::PATCH,
            &ann_path,
            Some(&bob_token),
            Some(json!({"name": "Hacked"})),
        )
        .await;
    assert_error(&resp, 403, "PERMISSION_DENIED");

    for (body, field) in [
        (json!({}), "nothing to update"),
        (json!({"name": " "}), "name"),
        (json!({"image": "javascript:alert(1)"}), "image"),
        (json!({"email": "x@y.z"}), "email"),
    ] {
        let resp = app
            .call(
                Method::PATCH,
                &ann_path,
                Some(&ann_token),
                Some(body.clone()),
            )
            .await;
        assert_error(&resp, 400, "INVALID_ARGUMENT");
        assert!(
            resp.body["message"].as_str().unwrap().contains(field),
            "{body}: {:?}",
            resp.body
        );
    }
    // The stored profile is untouched by all of the above.
    let resp = app.get(&ann_path, &ann_token).await;
    assert_eq!(resp.body["data"]["name"], "Ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_id_is_a_400() {
    let app = TestApp::spawn().await;
    let token = app.admin_token();
    let resp = app.get("/api/users/not-a-uuid", &token).await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    assert!(resp.body["message"].as_str().unwrap().contains("id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_is_a_404_and_the_repeat_skips_the_database() {
    let app = TestApp::spawn().await;
    let token = app.admin_token();
    let path = format!("/api/users/{}", uuid::Uuid::new_v4());
    let resp = app.get(&path, &token).await;
    assert_error(&resp, 404, "NOT_FOUND");

    let queries = app.user_db.checkouts();
    for _ in 0..3 {
        let resp = app.get(&path, &token).await;
        assert_error(&resp, 404, "NOT_FOUND");
    }
    assert_eq!(
        app.user_db.checkouts(),
        queries,
        "answered from the not-found marker"
    );
    let marker_hits = app
        .metric("huddle_cache_lookups_total{key=\"user\",result=\"not_found_hit\"}")
        .await;
    assert_eq!(marker_hits, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_after_a_miss_by_email_is_found() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let path = "/api/users/by-email?email=late@example.com";
    assert_error(&app.get(path, &admin).await, 404, "NOT_FOUND");
    app.create_user("Late", "late@example.com").await;
    let resp = app.get(path, &admin).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["data"]["name"], "Late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_email_is_admin_only_and_validated() {
    let app = TestApp::spawn().await;
    let ann = app.create_user("Ann", "ann@example.com").await;
    let ann_token = app.token_for(ann["id"].as_str().unwrap());
    let admin = app.admin_token();

    let resp = app
        .get("/api/users/by-email?email=ann@example.com", &ann_token)
        .await;
    assert_error(&resp, 403, "PERMISSION_DENIED");
    let resp = app.get("/api/users/by-email?email=nope", &admin).await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    let resp = app.get("/api/users/by-email", &admin).await;
    assert_error(&resp, 400, "INVALID_ARGUMENT");
    let resp = app
        .get("/api/users/by-email?email=ANN@example.com", &admin)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body["data"]["id"], ann["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_valid_and_unexpired() {
    let app = TestApp::spawn().await;
    let path = format!("/api/users/{}", uuid::Uuid::new_v4());
    let resp = app.call(Method::GET, &path, None, None).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    let resp = app.get(&path, "garbage").await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    let wrong_secret = gateway::auth::mint_token(
        "another-secret-0123456789",
        &uuid::Uuid::new_v4().to_string(),
        false,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert_error(&app.get(&path, &wrong_secret).await, 401, "UNAUTHENTICATED");

    let expired = expired_token();
    let resp = app.get(&path, &expired).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    assert!(resp.body["message"].as_str().unwrap().contains("expired"));
}

fn expired_token() -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 120;
    encode(
        &Header::default(),
        &json!({"sub": uuid::Uuid::new_v4().to_string(), "exp": exp}),
        &EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints() {
    let app = TestApp::spawn().await;
    let resp = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let resp = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    for path in ["/api/users", "/api/users/{id}", "/api/users/by-email"] {
        assert!(
            resp.body["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let resp = app.call(Method::GET, "/api/docs/", None, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.as_str().unwrap_or_default().contains("swagger"));
    assert!(app.metrics().await.contains("huddle_http_requests_total"));
    let resp = app.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_error(&resp, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let resp = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}
