//! The meeting-deletion cascade: a deletion recorded in the delete's
//! transaction is retried until every owning service acknowledged it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::future::BoxFuture;
use huddle_common::Shutdown;
use huddle_db::{Database, DbError};
use huddle_testkit::database::TestDatabase;
use meeting_service::{Cascade, CascadeTarget, schema::meeting_deletions};
use uuid::Uuid;

/// Fails its first `failures` calls, then acknowledges; records what it saw.
struct Flaky {
    name: &'static str,
    failures: usize,
    calls: AtomicUsize,
    deleted: Mutex<Vec<Uuid>>,
}

impl Flaky {
    fn new(name: &'static str, failures: usize) -> Arc<Self> {
        Arc::new(Self {
            name,
            failures,
            calls: AtomicUsize::new(0),
            deleted: Mutex::default(),
        })
    }
}

impl CascadeTarget for Flaky {
    fn service(&self) -> &'static str {
        self.name
    }

    fn delete_meeting_data(&self, meeting: Uuid) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call < self.failures {
                return Err("connection refused".to_owned());
            }
            self.deleted.lock().unwrap().push(meeting);
            Ok(())
        })
    }
}

async fn record(db: &Database, meeting: Uuid) {
    let mut conn = db.conn().await.unwrap();
    conn.transaction::<_, DbError, _>(async |conn| Cascade::record(conn, meeting).await)
        .await
        .unwrap();
}

async fn row(db: &Database, meeting: Uuid) -> Option<(i32, Option<String>)> {
    let mut conn = db.conn().await.unwrap();
    meeting_deletions::table
        .find(meeting)
        .select((meeting_deletions::attempts, meeting_deletions::last_error))
        .first(&mut conn)
        .await
        .optional()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_is_retried_until_it_acknowledges() {
    let test_db = TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS)
        .await
        .unwrap();
    let db = Database::connect(test_db.url(), 2).unwrap();
    let chat = Flaky::new("chat", 2);
    let recording = Flaky::new("recording", 0);
    let cascade = Cascade::new(db.clone(), vec![chat.clone(), recording.clone()]);
    let meeting = Uuid::new_v4();
    record(&db, meeting).await;
    assert_eq!(cascade.pending().await.unwrap(), 1);

    assert_eq!(cascade.drain().await.unwrap(), (0, 1));
    let (attempts, error) = row(&db, meeting).await.unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("chat: connection refused"));
    assert_eq!(cascade.drain().await.unwrap(), (0, 1));
    assert_eq!(row(&db, meeting).await.unwrap().0, 2);

    assert_eq!(cascade.drain().await.unwrap(), (1, 0));
    assert_eq!(row(&db, meeting).await, None);
    assert_eq!(cascade.pending().await.unwrap(), 0);
    assert_eq!(*chat.deleted.lock().unwrap(), [meeting]);
    // The healthy service was asked again each round: targets are idempotent.
    assert_eq!(
        *recording.deleted.lock().unwrap(),
        [meeting, meeting, meeting]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_finishes_deletions_left_pending() {
    let test_db = TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS)
        .await
        .unwrap();
    let db = Database::connect(test_db.url(), 2).unwrap();
    let chat = Flaky::new("chat", 1);
    let cascade = Cascade::new(db.clone(), vec![chat.clone()]);
    // Recorded before the relay runs: as after a crash, or a restart.
    let meetings: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for m in &meetings {
        record(&db, *m).await;
    }
    let shutdown = Shutdown::new();
    let relay = tokio::spawn(cascade.clone().run_relay(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cascade.pending().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut deleted = chat.deleted.lock().unwrap().clone();
    deleted.sort();
    let mut expected = meetings.clone();
    expected.sort();
    assert_eq!(deleted, expected);
    shutdown.trigger();
    relay.await.unwrap();
}
