//! The atomic window append (`recentChats`), on a single server and on the
//! cluster: posts racing on several clients and replays of every append
//! leave exactly the last N in order; an absent window stays absent; a fill
//! that read the database before an append never lands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use cache_core::{
    Appended, Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, RECENT_CHATS_LIMIT,
    WindowEntry,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    id: String,
    sent_at: String,
    text: String,
}

fn config(cluster: bool) -> CacheConfig {
    CacheConfig {
        redis_url: std::env::var("HUDDLE_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        cluster_nodes: if cluster {
            huddle_testkit::cluster_nodes()
        } else {
            Vec::new()
        },
        prefix: format!("huddle:test-{}:", Uuid::new_v4().simple()),
        op_timeout: Duration::from_millis(500),
        ..CacheConfig::default()
    }
}

fn instance(config: &CacheConfig) -> Cache {
    Cache::new(
        config,
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

/// Entry `n`: sent at second `n` (fixed width, so text order is time order);
/// every fourth shares its second with the next, ordered by id.
fn entry(n: u32) -> Entry {
    let second = n - n % 4 / 3;
    Entry {
        id: format!("{n:08}-id"),
        sent_at: format!(
            "2026-01-01T00:{:02}:{:02}.000000Z",
            second / 60,
            second % 60
        ),
        text: format!("message \"{n}\" / é"),
    }
}

fn posted(meeting: Uuid, e: &Entry) -> Invalidation {
    Invalidation::chat_message(
        meeting,
        Some(WindowEntry {
            sent_at: e.sent_at.clone(),
            id: e.id.clone(),
            json: serde_json::to_string(e).unwrap(),
        }),
    )
}

async fn read(cache: &Cache, key: &CacheKey) -> Option<Vec<Entry>> {
    let (raw, _) = cache.inspect(key.path()).await.unwrap()?;
    Some(serde_json::from_str(&raw).unwrap())
}

async fn fill(cache: &Cache, key: &CacheKey, entries: Vec<Entry>) {
    let got = cache
        .get_or_load(key, key.ttl(), &[], || async {
            Ok::<_, std::convert::Infallible>(Some(entries))
        })
        .await
        .unwrap();
    assert!(got.is_some());
}

/// 200 posts applied concurrently from 4 clients in a scrambled order, each
/// applied twice (the outbox may replay), leave exactly the last 50 in
/// order. Seen to fail with the script's duplicate check removed (the
/// window held each of the last 25 twice).
async fn concurrent_appends_and_replays_keep_the_last_n_in_order(cluster: bool) {
    let config = config(cluster);
    let clients: Vec<Cache> = (0..4).map(|_| instance(&config)).collect();
    let meeting = Uuid::new_v4();
    let key = CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT);
    fill(&clients[0], &key, vec![entry(0)]).await;
    let mut order: Vec<u32> = (1..=200).collect();
    // A fixed scramble: far from the order of the keys.
    order.sort_by_key(|n| (n * 7919) % 211);
    let tasks = order.chunks(10).enumerate().map(|(i, chunk)| {
        let cache = clients[i % clients.len()].clone();
        let chunk = chunk.to_vec();
        tokio::spawn(async move {
            for n in chunk.iter().chain(chunk.iter()) {
                cache
                    .invalidate(&posted(meeting, &entry(*n)))
                    .await
                    .unwrap();
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let window = read(&clients[0], &key).await.expect("window still cached");
    let expected: Vec<Entry> = (151..=200).map(entry).collect();
    assert_eq!(window, expected);
}

/// No window cached: an append leaves no key behind (the next read loads
/// the window whole).
async fn an_absent_window_stays_absent(cluster: bool) {
    let cache = instance(&config(cluster));
    let meeting = Uuid::new_v4();
    let key = CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT);
    let outcome = cache
        .append_to_window(&posted(meeting, &entry(1)).appends.pop_first().unwrap())
        .await
        .unwrap();
    assert_eq!(outcome, Appended::Nothing);
    assert!(cache.inspect(key.path()).await.unwrap().is_none());
}

/// A fill whose loader read the window before a post committed must not
/// land after the post's append: the append deletes the lease. Seen to fail
/// (the stale one-entry window landed) with the script returning 0 on a
/// lease instead of deleting it.
async fn a_fill_that_read_before_an_append_never_lands(cluster: bool) {
    let config = config(cluster);
    let (filler, poster) = (instance(&config), instance(&config));
    let meeting = Uuid::new_v4();
    let key = CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT);
    let (read_done, appended) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fill = {
        let (key, read_done, appended) = (key.clone(), read_done.clone(), appended.clone());
        tokio::spawn(async move {
            filler
                .get_or_load(&key, key.ttl(), &[], || async {
                    let stale = vec![entry(1)];
                    read_done.notify_one();
                    appended.notified().await;
                    Ok::<_, std::convert::Infallible>(Some(stale))
                })
                .await
                .unwrap()
        })
    };
    read_done.notified().await;
    poster
        .invalidate(&posted(meeting, &entry(2)))
        .await
        .unwrap();
    appended.notify_one();
    // The filler still answers its caller with what it read...
    assert_eq!(fill.await.unwrap(), Some(vec![entry(1)]));
    // ...but the window is not cached with it.
    assert!(poster.inspect(key.path()).await.unwrap().is_none());
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod single_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(false).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(true).await;
                }
            )*
        }
    };
}

suite!(
    concurrent_appends_and_replays_keep_the_last_n_in_order,
    an_absent_window_stays_absent,
    a_fill_that_read_before_an_append_never_lands,
);
