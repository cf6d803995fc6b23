//! The recent-chat window under concurrent posts (SPEC §5 "chat message":
//! appended atomically, never lost or reordered): with the window cached,
//! 20 tasks post 200 messages at once through 2 gateways and 2
//! chat-services; the cached window is then exactly the database's last 50,
//! in order, without duplicates — and stays so when every append is applied
//! again, as an outbox replay would.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cache_core::{CacheKey, Invalidation, RECENT_CHATS_LIMIT};
use chat_service::cache::WindowMessage;
use common::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

async fn cached_window(app: &TestApp, key: &CacheKey) -> Vec<String> {
    let (raw, _) = app
        .cache
        .inspect(key.path())
        .await
        .unwrap()
        .expect("the window is still cached");
    let window: Vec<WindowMessage> = serde_json::from_str(&raw).unwrap();
    window.into_iter().map(|m| m.id).collect()
}

async fn stored(app: &TestApp, meeting: Uuid, limit: u32) -> Vec<chat_service::db::MessageRow> {
    chat_service::db::recent(&mut app.chat_db.conn().await.unwrap(), meeting, limit)
        .await
        .unwrap()
}

/// Seen to fail with the append script's duplicate check removed (after
/// the replay the window held the last 25 messages twice each) — the
/// posts alone passed, since each is appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_across_replicas_leave_exactly_the_last_50_cached() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (_, host) = a.user("Host").await;
    let meeting = a.create_live_meeting(&host, "Busy").await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let mut posters = vec![host.clone()];
    for n in 0..19 {
        let (_, token) = a.user(&format!("P{n}")).await;
        a.join(&token, meeting["inviteCode"].as_str().unwrap())
            .await;
        posters.push(token);
    }
    a.post_chat(&host, &id, "before").await;
    let chats = format!("/api/meetings/{id}/chats");
    assert_eq!(a.get(&chats, &host).await.status, StatusCode::OK);
    let meeting_id: Uuid = id.parse().unwrap();
    let key = CacheKey::recent_chats(meeting_id, RECENT_CHATS_LIMIT);
    a.assert_cached(&[key.path().to_owned()]).await;

    let tasks: Vec<_> = posters
        .iter()
        .enumerate()
        .map(|(t, token)| {
            let base = if t % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let (token, chats) = (token.clone(), chats.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0..10 {
                    let resp = http
                        .post(format!("{base}{chats}"))
                        .bearer_auth(&token)
                        .json(&json!({"message": format!("task {t} message {n}")}))
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
    let last_50: Vec<String> = stored(&a, meeting_id, 50)
        .await
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(cached_window(&a, &key).await, last_50);

    // Every append again, from both replicas' clients, in reverse order.
    let all = stored(&a, meeting_id, 1000).await;
    assert_eq!(all.len(), 201);
    let replays: Vec<_> = all
        .iter()
        .rev()
        .enumerate()
        .map(|(i, row)| {
            let cache = if i % 2 == 0 {
                a.cache.clone()
            } else {
                b.cache.clone()
            };
            let entry = WindowMessage::from(row).entry().unwrap();
            tokio::spawn(async move {
                cache
                    .invalidate(&Invalidation::chat_message(meeting_id, Some(entry)))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for replay in replays {
        replay.await.unwrap();
    }
    assert_eq!(cached_window(&a, &key).await, last_50);
    let served: Vec<String> = a.get(&chats, &host).await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(served, last_50);
}
