//! SPEC §6, "never wrong is end to end": a profile update that user-service
//! alone cannot apply to Redis must still reach every meeting answer that
//! shows the user, on the first read after the acknowledgement (issue 19,
//! finding 1). user-service's hold covers its own reads only; meeting-service,
//! whose Redis link is intact, hears nothing of the pending row. So no
//! meeting-service value may embed a user: the cards are composed at answer
//! time from user-service's own (held) reads.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, TestOptions, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `data` of a 200 answer.
async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    let resp = app.get(path, token).await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {:?}", resp.body);
    resp.body["data"].clone()
}

fn str_of(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap().to_owned()
}

/// Every user name an answer shows, wherever it is nested.
fn names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("name", Value::String(name)) => out.push(name.clone()),
                    _ => names(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

/// user-service alone cut off from Redis (its own link through a proxy; the
/// meeting service's link intact): every meeting route that shows the host
/// or a participant is warm, both rename themselves (acknowledged, their
/// invalidations left pending in user-service's outbox), and the first read
/// of each route after the acknowledgements shows the new names.
///
/// Seen to fail on main (meeting values embedding cards, tagged
/// `tag:user:{id}`): all six answered the old names after both renames
/// were acknowledged — details `["Old Host"]`, participants `["Old Host",
/// "Old Guest"]`, the live and scheduled lists, the participations and the
/// invite preview — while `GET /api/users/{id}` answered "New Host": the
/// tag's deletion waited in user-service's outbox and no meeting-service
/// replica held its reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_user_service_cannot_apply_still_reaches_every_meeting_answer() {
    let app = TestApp::spawn_with(TestOptions {
        user_redis_proxy: true,
        ..TestOptions::default()
    })
    .await;
    let (host_id, host) = app.user("Old Host").await;
    let (guest_id, guest) = app.user("Old Guest").await;
    let live = app.create_live_meeting(&host, "Live").await;
    let live_id = str_of(&live, "id");
    app.join(&guest, &str_of(&live, "inviteCode")).await;
    let planned = app.create_meeting(&host, "Planned").await;
    let planned_code = str_of(&planned, "inviteCode");
    // Joined before warming, so the reads below change nothing.
    app.join(&guest, &planned_code).await;

    let details = format!("/api/meetings/{live_id}");
    let participants = format!("{details}/participants");
    let participations = format!("/api/users/{guest_id}/participations");
    let routes = [
        details.as_str(),
        participants.as_str(),
        "/api/meetings/live",
        "/api/meetings/scheduled",
        participations.as_str(),
    ];
    for route in routes {
        read(&app, route, &guest).await;
    }
    app.join(&guest, &planned_code).await;
    app.assert_cached(&[
        format!("meeting:{live_id}"),
        format!("meeting:{live_id}:participants"),
        "meetings:live".to_owned(),
        "meetings:scheduled".to_owned(),
        format!("user:{guest_id}:participations"),
        format!("meeting:invite:{planned_code}"),
        format!("user:{host_id}"),
        format!("user:{guest_id}"),
    ])
    .await;

    let user_redis = app.user_redis.as_ref().unwrap();
    user_redis.set_up(false);
    for (id, token, name) in [
        (&host_id, &host, "New Host"),
        (&guest_id, &guest, "New Guest"),
    ] {
        let resp = app
            .patch(&format!("/api/users/{id}"), token, json!({"name": name}))
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    }
    // The situation is the one meant: user-service could not delete its own
    // keys (they still hold the old names), yet answers for itself.
    for id in [&host_id, &guest_id] {
        let (cached, _) = app
            .cache
            .inspect(&format!("user:{id}"))
            .await
            .unwrap()
            .unwrap();
        assert!(cached.contains("Old "), "user:{id} = {cached}");
    }

    let mut stale = Vec::new();
    for route in routes {
        let mut shown = Vec::new();
        names(&read(&app, route, &guest).await, &mut shown);
        if shown.is_empty() || shown.iter().any(|n| n.starts_with("Old ")) {
            stale.push(format!("{route}: {shown:?}"));
        }
    }
    let mut shown = Vec::new();
    names(&app.join(&guest, &planned_code).await, &mut shown);
    if shown != ["New Host"] {
        stale.push(format!("invite preview: {shown:?}"));
    }
    assert_eq!(
        read(&app, &format!("/api/users/{host_id}"), &guest).await["name"],
        "New Host"
    );
    assert!(
        stale.is_empty(),
        "stale after the acknowledged renames: {stale:#?}"
    );

    // Once its link is back, user-service applies what it owed (its relay,
    // not the TTL).
    user_redis.set_up(true);
    let applied = eventually(Duration::from_secs(15), async || {
        app.cache
            .inspect(&format!("user:{host_id}"))
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(
        applied,
        "user-service never applied its pending invalidations"
    );
}
