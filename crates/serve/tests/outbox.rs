//! The outbox across replicas, against real Postgres and a private Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cache_core::{Cache, CacheConfig, CacheMetrics, Invalidation};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_common::Shutdown;
use huddle_db::{Database, DbError};
use huddle_serve::{
    Outbox,
    relay::{self, Policy},
};
use huddle_testkit::{TestRedis, database::TestDatabase};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");

fn cache(url: &str, prefix: &str) -> Cache {
    Cache::new(
        &CacheConfig {
            redis_url: url.to_owned(),
            prefix: prefix.to_owned(),
            op_timeout: Duration::from_millis(200),
            breaker_cooldown: Duration::from_millis(100),
            ..CacheConfig::default()
        },
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

async fn pending(db: &Database) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM cache_outbox")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn eventually(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// Waits until a backend of this database is LISTENing, so a NOTIFY sent
/// after it cannot be missed.
async fn wait_for_listener(db: &Database) {
    let listening = eventually(Duration::from_secs(10), async || {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = db.conn().await.unwrap();
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n > 0
    })
    .await;
    assert!(listening, "the relay's listener never connected");
}

/// A replica whose write could not reach Redis dies; another replica,
/// idle (its own tick an hour away), applies the row within a moment of
/// Redis answering, because the failed apply woke it through Postgres.
///
/// Seen to fail with `notify_replicas` removed from `Outbox::apply`: the
/// row was still pending after 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_could_not_apply_wakes_the_others() {
    let mut redis = TestRedis::start();
    let database = TestDatabase::create("huddle_serve", MIGRATIONS)
        .await
        .unwrap();
    let prefix = format!("huddle:test-{}:", uuid::Uuid::new_v4().simple());
    let shutdown = Shutdown::new();

    let b_db = Database::connect(database.url(), 4).unwrap();
    let b = Outbox::new(b_db.clone(), cache(&redis.url(), &prefix), "b");
    let policy = Policy {
        idle: Duration::from_secs(3600),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    tokio::spawn(relay::run(b.clone(), policy, shutdown.clone()));
    tokio::spawn(b.clone().listen(shutdown.clone()));
    wait_for_listener(&b_db).await;

    redis.stop();
    let a_db = Database::connect(database.url(), 4).unwrap();
    let a = Outbox::new(a_db.clone(), cache(&redis.url(), &prefix), "a");
    let mut conn = a_db.conn().await.unwrap();
    let recorded = conn
        .transaction::<_, DbError, _>(async |conn| {
            Outbox::record(conn, Invalidation::user_create("ann@example.com")).await
        })
        .await
        .unwrap();
    drop(conn);
    a.apply(recorded).await; // refused: Redis is down
    assert_eq!(pending(&a_db).await, 1, "the row waits for a relay");
    drop(a); // replica A is gone; it never retries

    redis.restart();
    let applied = eventually(Duration::from_secs(5), async || pending(&b_db).await == 0).await;
    shutdown.trigger();
    assert!(applied, "replica B never applied A's row");
}

/// A row written by a newer binary (one this one cannot decode) is left
/// for a binary that can apply it, and does not hold back the others.
///
/// Seen to fail with the old behaviour (undecodable rows deleted): 0 rows
/// left instead of 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_a_newer_version_are_left_for_it() {
    let database = TestDatabase::create("huddle_serve", MIGRATIONS)
        .await
        .unwrap();
    let prefix = format!("huddle:test-{}:", uuid::Uuid::new_v4().simple());
    let url = std::env::var("HUDDLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let db = Database::connect(database.url(), 2).unwrap();
    let outbox = Outbox::new(db.clone(), cache(&url, &prefix), "t");
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO cache_outbox (invalidation) VALUES ('{\"write\":\"from_the_future\"}')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let _later = conn
        .transaction::<_, DbError, _>(async |conn| {
            Outbox::record(conn, Invalidation::user_create("bob@example.com")).await
        })
        .await
        .unwrap();
    drop(conn);

    assert_eq!(
        outbox.drain().await.unwrap(),
        1,
        "the decodable row applied"
    );
    assert_eq!(pending(&db).await, 1, "the newer row is still there");
    assert_eq!(outbox.drain().await.unwrap(), 0);
    assert_eq!(pending(&db).await, 1);
}
