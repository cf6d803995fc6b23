//! The read window's rule, pinned call by call: what it reuses, for whom,
//! and what it never keeps. The cross-replica guarantee (a write acknowledged
//! on one gateway, read on another) is tested from outside in
//! `crates/huddle/tests/read_window.rs` and `stress.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use actix_web::{App, HttpResponse, body::to_bytes, middleware::from_fn, test, web};
use serde_json::{Value, json};

use super::*;

fn window(ms: u64) -> Arc<ReadWindow> {
    let w = Duration::from_millis(ms);
    Arc::new(ReadWindow::new(w, w, &Registry::new()).unwrap())
}

const USER: WindowKey = WindowKey::User {
    id: Uuid::nil(),
    email: false,
};

/// Serves `key`, counting backend calls; the answer names the call's number.
async fn read(w: &ReadWindow, key: WindowKey, calls: &AtomicUsize) -> Value {
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
    w: &Arc<ReadWindow>,
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
    w: &Arc<ReadWindow>,
    calls: &Arc<AtomicUsize>,
) -> actix_web::rt::task::JoinHandle<Value> {
    let (w, calls) = (w.clone(), calls.clone());
    actix_web::rt::spawn(async move { read(&w, USER, &calls).await })
}

#[actix_web::test]
async fn an_answer_is_reused_within_the_window_and_only_then() {
    let w = window(40);
    let calls = AtomicUsize::new(0);
    let first = read(&w, USER, &calls).await;
    assert_eq!(first, json!({"success": true, "data": {"call": 1}}));
    assert_eq!(
        read(&w, USER, &calls).await,
        first,
        "reused inside the window"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        read(&w, USER, &calls).await["data"]["call"],
        2,
        "asked again after it"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn keys_are_kept_apart() {
    let w = window(1000);
    let calls = AtomicUsize::new(0);
    let with_email = WindowKey::User {
        id: Uuid::nil(),
        email: true,
    };
    let other_caller = |caller| WindowKey::Meeting {
        caller,
        id: Uuid::nil(),
    };
    for key in [
        USER,
        with_email,
        other_caller(Uuid::nil()),
        other_caller(Uuid::max()),
        WindowKey::Live,
    ] {
        read(&w, key, &calls).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "one call per distinct key");
}

#[actix_web::test]
async fn a_zero_window_reuses_nothing() {
    let w = window(0);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        read(&w, USER, &calls).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[actix_web::test]
async fn errors_are_never_kept() {
    let w = window(1000);
    let calls = AtomicUsize::new(0);
    let failed = w
        .serve(USER, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Value, _>(ApiError::internal())
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(read(&w, USER, &calls).await["data"]["call"], 2);
}

/// However many keys are read within a window, at most `MAX_ENTRIES`
/// answers are kept; past it new answers are served, not kept, and kept
/// ones are dropped once expired.
#[actix_web::test]
async fn the_kept_answers_are_bounded() {
    let w = window(3_000);
    let calls = AtomicUsize::new(0);
    let key = |n: u128| WindowKey::User {
        id: Uuid::from_u128(n),
        email: false,
    };
    for n in 0..(MAX_ENTRIES as u128 + 500) {
        read(&w, key(n), &calls).await;
    }
    assert_eq!(w.lock().map.len(), MAX_ENTRIES);
    // Past the bound: served by the backend each time, never kept.
    let extra = key(u128::MAX);
    read(&w, extra, &calls).await;
    read(&w, extra, &calls).await;
    assert_eq!(calls.load(Ordering::SeqCst), MAX_ENTRIES + 502);
    // Expired answers make room again.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    read(&w, extra, &calls).await;
    assert_eq!(w.lock().map.len(), 1);
}

/// Requests arriving while the leader's call runs share its answer.
#[actix_web::test]
async fn requests_arriving_during_a_call_share_it() {
    let w = window(5_000);
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, release) = blocked_leader(&w, &calls, "leader").await;
    let waiters: Vec<_> = (0..4).map(|_| spawn_read(&w, &calls)).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    assert_eq!(body(leader.await.unwrap()).await["data"], "leader");
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap()["data"], "leader");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A call that started longer than the window ago vouches for nobody who
/// arrives now, even while it is still running.
#[actix_web::test]
async fn a_request_arriving_after_the_window_never_joins_an_older_call() {
    let w = window(30);
    let calls = Arc::new(AtomicUsize::new(0));
    let (slow, release) = blocked_leader(&w, &calls, "slow").await;
    // Joins the slow call inside its window.
    let early = spawn_read(&w, &calls);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(read(&w, USER, &calls).await["data"]["call"], 2);
    // The slow leader lands late: its early waiter still gets its answer
    // (a newer slot replaced its own), and it must not replace the newer one.
    release.send(()).unwrap();
    assert_eq!(body(slow.await.unwrap()).await["data"], "slow");
    assert_eq!(early.await.unwrap()["data"], "slow");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the early waiter asked nobody"
    );
    let after = read(&w, USER, &calls).await;
    assert_ne!(after["data"], "slow", "{after}");
}

/// A leader that goes away (its client hung up) releases its waiters, who
/// then ask for themselves instead of hanging or sharing nothing.
#[actix_web::test]
async fn a_cancelled_leader_releases_its_waiters() {
    let w = window(5_000);
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

/// Times a POST and a GET through the fence middleware with `w`.
async fn fenced(w: ReadWindow) -> (Duration, Duration) {
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(w))
            .route("/w", web::post().to(HttpResponse::Ok))
            .route("/w", web::get().to(HttpResponse::Ok))
            .wrap(from_fn(fence)),
    )
    .await;
    let timed = async |req: test::TestRequest| {
        let started = Instant::now();
        let resp = test::call_service(&app, req.uri("/w").to_request()).await;
        assert_eq!(resp.status(), 200);
        started.elapsed()
    };
    (
        timed(test::TestRequest::post()).await,
        timed(test::TestRequest::get()).await,
    )
}

/// The fence: a write's answer leaves no sooner than the window after its
/// handler finished; a read's is not held back.
#[actix_web::test]
async fn writes_wait_out_the_window_and_reads_do_not() {
    let ms = Duration::from_millis(200);
    let (write, read) = fenced(ReadWindow::new(ms, ms, &Registry::new()).unwrap()).await;
    assert!(write >= ms, "write answered after {write:?}");
    assert!(read < ms, "read answered after {read:?}");
}

/// The fence is its own setting: with no window at all (a gateway with
/// `HUDDLE_CACHE_READS=false`, or the first step of a rollout) writes still
/// wait the fence, so the other replicas' windows stay covered. Seen to
/// fail while the fence was the window (the write answered after ~0 ms).
#[actix_web::test]
async fn the_fence_holds_writes_without_a_window() {
    let fence_ms = Duration::from_millis(150);
    let (write, read) =
        fenced(ReadWindow::new(Duration::ZERO, fence_ms, &Registry::new()).unwrap()).await;
    assert!(write >= fence_ms, "write answered after {write:?}");
    assert!(read < fence_ms, "read answered after {read:?}");
}

/// A fence shorter than the window is refused by the start-up check and,
/// should a caller skip it, never honoured below the window.
#[actix_web::test]
async fn a_fence_shorter_than_the_window_is_refused() {
    let (short, long) = (Duration::from_millis(1), Duration::from_millis(120));
    let err = check_fence(long, short).unwrap_err();
    assert!(
        err.contains("HUDDLE_READ_FENCE_MS") && err.contains("HUDDLE_READ_WINDOW_MS"),
        "{err}"
    );
    assert!(check_fence(short, long).is_ok());
    assert!(check_fence(long, long).is_ok());
    let w = ReadWindow::new(long, short, &Registry::new()).unwrap();
    assert_eq!(w.fence(), long);
    let (write, _) = fenced(w).await;
    assert!(write >= long, "write answered after {write:?}");
}
