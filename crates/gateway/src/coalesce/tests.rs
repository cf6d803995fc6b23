//! Read coalescing's rule, pinned call by call: who shares a call, and that
//! nobody is handed the answer of a call that started before they arrived.
//! The cross-replica guarantee is also tested from outside in
//! `crates/huddle/tests/read_window.rs` and `stress.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use actix_web::{HttpResponse, body::to_bytes};
use serde_json::{Value, json};

use super::*;

fn coalescer() -> Arc<Coalescer> {
    Arc::new(Coalescer::new(true, &Registry::new()).unwrap())
}

const USER: ReadKey = ReadKey::User {
    id: Uuid::nil(),
    email: false,
};

/// Serves `key`, counting backend calls; the answer names the call's number.
async fn read(w: &Coalescer, key: ReadKey, calls: &AtomicUsize) -> Value {
    let resp = w
        .serve(key, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, ApiError>(json!({ "call": n }))
        })
        .await
        .unwrap();
    body(resp).await
}

async fn body(resp: HttpResponse) -> Value {
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&to_bytes(resp.into_body()).await.unwrap()).unwrap()
}

/// A leader whose call for `USER` runs until released, answering `answer`;
/// returns once its call has started.
async fn blocked_leader(
    w: &Arc<Coalescer>,
    calls: &Arc<AtomicUsize>,
    answer: &'static str,
) -> (
    actix_web::rt::task::JoinHandle<HttpResponse>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let before = calls.load(Ordering::SeqCst);
    let leader = {
        let (w, calls) = (w.clone(), calls.clone());
        actix_web::rt::spawn(async move {
            w.serve(USER, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                released.await.unwrap();
                Ok::<_, ApiError>(json!(answer))
            })
            .await
            .unwrap()
        })
    };
    while calls.load(Ordering::SeqCst) == before {
        tokio::task::yield_now().await;
    }
    (leader, release)
}

/// A read of `USER` in a task of its own.
fn spawn_read(
    w: &Arc<Coalescer>,
    calls: &Arc<AtomicUsize>,
) -> actix_web::rt::task::JoinHandle<Value> {
    let (w, calls) = (w.clone(), calls.clone());
    actix_web::rt::spawn(async move { read(&w, USER, &calls).await })
}

/// The hazard coalescing must not have (SPEC §6, "seen"): a call in flight
/// started before a write and will answer the old value; the client saw the
/// new one elsewhere (another gateway) and then asks here. It must be given
/// an answer from a call that starts after it arrived. Seen to fail with
/// `arrive` letting the request join the running call, as the read window
/// it replaced did (it got "old"; two more tests here failed with it).
#[actix_web::test]
async fn a_request_never_takes_the_answer_of_a_call_already_running() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let stored = Arc::new(Mutex::new("old"));
    let (stale, release) = blocked_leader(&w, &calls, "old").await;
    *stored.lock().unwrap() = "new"; // the write applies; the client sees it
    let late = {
        let (w, stored) = (w.clone(), stored.clone());
        actix_web::rt::spawn(async move {
            let resp = w
                .serve(USER, || async {
                    Ok::<_, ApiError>(json!(*stored.lock().unwrap()))
                })
                .await
                .unwrap();
            body(resp).await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    assert_eq!(body(stale.await.unwrap()).await["data"], "old");
    assert_eq!(late.await.unwrap()["data"], "new");
}

/// Requests arriving while a call runs share the one call that starts
/// when it ends: a hot key costs two calls, not one per request.
#[actix_web::test]
async fn requests_arriving_during_a_call_share_the_next_one() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, release) = blocked_leader(&w, &calls, "leader").await;
    let waiters: Vec<_> = (0..20).map(|_| spawn_read(&w, &calls)).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nobody asked meanwhile");
    release.send(()).unwrap();
    assert_eq!(body(leader.await.unwrap()).await["data"], "leader");
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap()["data"]["call"], 2);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(w.lock().map.is_empty(), "nothing is kept once answered");
}

/// Nothing is reused once answered: each read after the last asks again.
#[actix_web::test]
async fn an_answer_is_never_reused_after_it_was_given() {
    let w = coalescer();
    let calls = AtomicUsize::new(0);
    for n in 1..=3 {
        assert_eq!(read(&w, USER, &calls).await["data"]["call"], n);
    }
    assert!(w.lock().map.is_empty());
}

/// A call for one key holds up no other key.
#[actix_web::test]
async fn keys_are_kept_apart() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let (_leader, _release) = blocked_leader(&w, &calls, "blocked").await;
    let with_email = ReadKey::User {
        id: Uuid::nil(),
        email: true,
    };
    let meeting = |caller| ReadKey::Meeting {
        caller,
        id: Uuid::nil(),
    };
    for key in [
        with_email,
        meeting(Uuid::nil()),
        meeting(Uuid::max()),
        ReadKey::Live,
    ] {
        tokio::time::timeout(Duration::from_secs(5), read(&w, key, &calls))
            .await
            .expect("not held up by another key's call");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "one call per distinct key");
}

/// Off (`HUDDLE_CACHE_READS=false`): every request asks on its own.
#[actix_web::test]
async fn switched_off_it_shares_nothing() {
    let w = Arc::new(Coalescer::new(false, &Registry::new()).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let (_leader, _release) = blocked_leader(&w, &calls, "blocked").await;
    let got = tokio::time::timeout(Duration::from_secs(5), read(&w, USER, &calls))
        .await
        .expect("not queued behind the running call");
    assert_eq!(got["data"]["call"], 2);
}

/// A failed call's error goes to its leader only: the requests that shared
/// the call ask for themselves.
#[actix_web::test]
async fn errors_are_never_shared() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, release) = blocked_leader(&w, &calls, "leader").await;
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (w, calls) = (w.clone(), calls.clone());
            actix_web::rt::spawn(async move {
                let resp = w
                    .serve(USER, || async {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        // The shared call (the second) fails.
                        if n == 2 {
                            return Err(ApiError::internal());
                        }
                        Ok(json!({ "call": n }))
                    })
                    .await;
                match resp {
                    Ok(resp) => Some(body(resp).await["data"]["call"].as_u64().unwrap()),
                    Err(_) => None,
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    leader.await.unwrap();
    let mut got = Vec::new();
    for waiter in waiters {
        got.push(waiter.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [None, Some(3), Some(4)], "one error, two own calls");
}

/// A leader that goes away (its client hung up) lets the queued requests
/// start their call instead of hanging.
#[actix_web::test]
async fn a_cancelled_leader_releases_its_waiters() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, _release) = blocked_leader(&w, &calls, "never").await;
    let waiter = spawn_read(&w, &calls);
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was released")
        .unwrap();
    assert_eq!(got["data"]["call"], 2);
}

/// A queued batch whose requests all went away before it could start is
/// claimed by the next request, which neither hangs nor queues behind it.
#[actix_web::test]
async fn an_abandoned_batch_is_claimed_by_the_next_request() {
    let w = coalescer();
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, release) = blocked_leader(&w, &calls, "leader").await;
    let gone = spawn_read(&w, &calls);
    tokio::time::sleep(Duration::from_millis(20)).await;
    gone.abort();
    let _ = gone.await;
    release.send(()).unwrap();
    leader.await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), read(&w, USER, &calls))
        .await
        .expect("not stuck behind the abandoned batch");
    assert_eq!(got["data"]["call"], 2);
    assert!(w.lock().map.is_empty());
}
