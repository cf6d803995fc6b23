//! NUL bytes and other control characters in any text field are bad input:
//! a 400 naming the field at the gateway, `InvalidArgument` from the
//! services themselves (whoever calls them), never a 500 from Postgres
//! (which refuses 0x00 in `text`). Both sides apply the one rule of
//! `huddle-domain`.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, assert_error, later};
use huddle_proto::{
    meeting::v1::{self as mpb, meeting_service_client::MeetingServiceClient},
    user::v1::{self as upb, user_service_client::UserServiceClient},
};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::{Code, transport::Channel};

fn assert_names(resp: &common::Response, field: &str) {
    assert_error(resp, 400, "INVALID_ARGUMENT");
    let message = resp.body["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("{field}: ")), "{message}");
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{status:?}"
    );
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Issue 9 item 6, first reproduction. Seen failing before the shared rule:
/// 500 `INTERNAL` (the URL parser accepts the NUL, Postgres does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_profile_image_is_a_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (me, token) = app.user("Ann").await;
    let path = format!("/api/users/{me}");
    let resp = app
        .patch(&path, &token, json!({"image": "https://a.io/x\u{0000}"}))
        .await;
    assert_names(&resp, "image");
    assert!(app.get(&path, &token).await.body["data"]["image"].is_null());
}

/// Issue 9 item 6, second reproduction. Seen failing before the shared
/// rule: 500 `INTERNAL` (descriptions had no control-character check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_meeting_description_is_a_400_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let (me, token) = app.user("Ann").await;
    let resp = app
        .post(
            "/api/meetings",
            &token,
            json!({"title": "x", "status": "LIVE", "description": "a\u{0000}"}),
        )
        .await;
    assert_names(&resp, "description");
    let mine = app.get(&format!("/api/users/{me}/meetings"), &token).await;
    assert_eq!(mine.body["data"], json!([]));
}

/// Every text field of every route. Seen failing with the control-character
/// check removed from `huddle_domain::text` (500s for image and
/// description, names and titles accepted with ESC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_field_refuses_control_characters_at_the_gateway() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let (me, token) = app.user("Ann").await;
    let meeting = app.create_meeting(&token, "Sync").await;
    let user = format!("/api/users/{me}");
    let m = format!("/api/meetings/{}", meeting["id"].as_str().unwrap());
    let cases: Vec<(Method, String, &str, Value, &str)> = vec![
        (
            Method::POST,
            "/api/users".into(),
            &admin,
            json!({"name": "A\u{0}", "email": "a@b.io"}),
            "name",
        ),
        (
            Method::POST,
            "/api/users".into(),
            &admin,
            json!({"name": "A\u{1b}[31m", "email": "a@b.io"}),
            "name",
        ),
        (
            Method::POST,
            "/api/users".into(),
            &admin,
            json!({"name": "A", "email": "a\u{0}@b.io"}),
            "email",
        ),
        (
            Method::POST,
            "/api/users".into(),
            &admin,
            json!({"name": "A", "email": "a@b.io", "image": "https://a.io/\u{0}"}),
            "image",
        ),
        (
            Method::PATCH,
            user.clone(),
            &token,
            json!({"name": "Ann\u{0}"}),
            "name",
        ),
        (
            Method::PATCH,
            user.clone(),
            &token,
            json!({"image": "https://a.io/\u{7f}"}),
            "image",
        ),
        (
            Method::POST,
            "/api/meetings".into(),
            &token,
            json!({"title": "x\u{0}", "status": "LIVE"}),
            "title",
        ),
        (
            Method::POST,
            "/api/meetings".into(),
            &token,
            json!({"title": "x", "scheduledAt": later(2), "description": "\u{0}"}),
            "description",
        ),
        (
            Method::PATCH,
            m.clone(),
            &token,
            json!({"title": "\u{0}x"}),
            "title",
        ),
        (
            Method::PATCH,
            m.clone(),
            &token,
            json!({"description": "a\u{0}b"}),
            "description",
        ),
        (
            Method::PATCH,
            m.clone(),
            &token,
            json!({"scheduledAt": format!("{}\u{0}", later(3))}),
            "scheduledAt",
        ),
        (
            Method::POST,
            "/api/meetings/join".into(),
            &token,
            json!({"inviteCode": "abcdefghijk\u{0}"}),
            "inviteCode",
        ),
    ];
    for (method, path, auth, body, field) in cases {
        let resp = app
            .call(method, &path, Some(auth), Some(body.clone()))
            .await;
        assert_names(&resp, field);
        assert!(resp.status.as_u16() != 500, "{body}");
    }
    let resp = app
        .get("/api/users/by-email?email=a%00%40b.io", &admin)
        .await;
    assert_names(&resp, "email");

    // Nothing above took effect; line breaks in a description are content.
    let resp = app
        .patch(&m, &token, json!({"description": "1. hi\n2. bye"}))
        .await;
    assert_eq!(resp.body["data"]["title"], "Sync");
    assert_eq!(resp.body["data"]["description"], "1. hi\n2. bye");
    assert_eq!(app.get(&user, &token).await.body["data"]["name"], "Ann");
}

/// The user service checks its input itself. Seen failing before the shared
/// rule: `Internal` for the NUL name and image (stored as given, refused by
/// Postgres), and the ESC name accepted (the gateway refused control
/// characters in names, user-service did not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_service_refuses_control_characters_whoever_calls_it() {
    let app = TestApp::spawn().await;
    let (me, _) = app.user("Ann").await;
    let mut users = UserServiceClient::new(channel(app.user_addr).await);
    let create = |name: &str, email: &str, image: Option<&str>| upb::CreateUserRequest {
        name: name.into(),
        email: email.into(),
        image: image.map(Into::into),
    };
    for (request, field) in [
        (create("A\u{0}", "a@b.io", None), "name"),
        (create("A\u{1b}", "a@b.io", None), "name"),
        (create("A", "a\u{0}@b.io", None), "email"),
        (create("A", "a@b.io", Some("https://a.io/x\u{0}")), "image"),
    ] {
        assert_invalid(users.create_user(request).await, field);
    }
    let update = |name: Option<&str>, image: Option<&str>| upb::UpdateUserRequest {
        id: me.clone(),
        name: name.map(Into::into),
        image: image.map(Into::into),
        clear_image: false,
    };
    assert_invalid(
        users.update_user(update(Some("B\u{0}"), None)).await,
        "name",
    );
    assert_invalid(
        users
            .update_user(update(None, Some("https://a.io/x\u{0}")))
            .await,
        "image",
    );
    let lookup = upb::GetUserByEmailRequest {
        email: "a\u{0}@b.io".into(),
    };
    assert_invalid(users.get_user_by_email(lookup).await, "email");
    let get = upb::GetUserRequest { id: me.clone() };
    let user = users.get_user(get).await.unwrap().into_inner();
    assert_eq!((user.name.as_str(), user.image), ("Ann", None));
}

/// The meeting service checks its input itself. Seen failing before the
/// shared rule: `Internal` for both NUL descriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meeting_service_refuses_control_characters_whoever_calls_it() {
    let app = TestApp::spawn().await;
    let (host, token) = app.user("Host").await;
    let meeting = app.create_meeting(&token, "Sync").await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let mut meetings = MeetingServiceClient::new(channel(app.meeting_addr).await);
    let create = |title: &str, description: Option<&str>| mpb::CreateMeetingRequest {
        caller_id: host.clone(),
        title: title.into(),
        description: description.map(Into::into),
        scheduled_at: None,
        status: mpb::MeetingStatus::Live.into(),
    };
    assert_invalid(
        meetings.create_meeting(create("x\u{0}", None)).await,
        "title",
    );
    assert_invalid(
        meetings.create_meeting(create("x", Some("a\u{0}"))).await,
        "description",
    );
    let update = |title: Option<&str>, description: Option<&str>| mpb::UpdateMeetingRequest {
        caller_id: host.clone(),
        id: id.clone(),
        title: title.map(Into::into),
        description: description.map(Into::into),
        ..mpb::UpdateMeetingRequest::default()
    };
    assert_invalid(
        meetings.update_meeting(update(Some("\u{0}"), None)).await,
        "title",
    );
    assert_invalid(
        meetings.update_meeting(update(None, Some("a\u{0}b"))).await,
        "description",
    );
    let join = mpb::JoinMeetingRequest {
        caller_id: host.clone(),
        invite_code: "abcdefghijk\u{0}".into(),
    };
    assert_invalid(meetings.join_meeting(join).await, "inviteCode");
    let get = mpb::GetMeetingRequest {
        caller_id: host.clone(),
        id: id.clone(),
    };
    let details = meetings.get_meeting(get).await.unwrap().into_inner();
    let row = details.meeting.unwrap();
    assert_eq!((row.title.as_str(), row.description), ("Sync", None));
    let resp = app
        .get(&format!("/api/users/{host}/meetings"), &token)
        .await;
    assert_eq!(resp.body["data"].as_array().unwrap().len(), 1);
}
