//! The outbox's LISTEN connection notices when it goes silent (issue 19,
//! finding 4: a half-open socket kept a replica deaf for hours), against
//! real Postgres, a private Redis and a proxy that freezes without closing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_common::Shutdown;
use huddle_db::{Database, DbError};
use huddle_serve::{
    Outbox, Settled,
    relay::{self, Policy},
};
use huddle_testkit::{TestRedis, database::TestDatabase, eventually, proxy::TcpProxy};

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

/// What a read of `key` answers when the database holds `fresh`.
async fn read(cache: &Cache, key: &CacheKey, fresh: &str) -> String {
    cache
        .get_or_load(key, key.ttl(), &[], || async {
            Ok::<_, DbError>(Some(fresh.to_owned()))
        })
        .await
        .unwrap()
        .unwrap()
}

async fn listeners(db: &Database) -> i64 {
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
    .n
}

/// Replica B's LISTEN connection freezes (open, silent). Replica A writes;
/// Redis refuses its invalidation, so A holds and NOTIFYs — which B cannot
/// hear. Within seconds B's heartbeat finds its listener silent and holds
/// its reads (they load from Postgres) until a pass after reconnecting has
/// applied the row.
///
/// Seen to fail without the heartbeat check (`Silent` never raised): B
/// answered the stale cached value for the whole 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_listener_is_found_and_reads_are_held() {
    let redis = TestRedis::start();
    let database = TestDatabase::create("huddle_serve", MIGRATIONS)
        .await
        .unwrap();
    let prefix = format!("huddle:test-{}:", uuid::Uuid::new_v4().simple());
    let shutdown = Shutdown::new();

    let postgres = tokio::net::lookup_host("127.0.0.1:5432")
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(postgres).await.unwrap();
    let mut via_proxy = url::Url::parse(database.url()).unwrap();
    via_proxy.set_host(Some("127.0.0.1")).unwrap();
    via_proxy.set_port(Some(proxy.addr().port())).unwrap();

    let b_db = Database::connect(database.url(), 4).unwrap();
    let b_cache = cache(&redis.url(), &prefix);
    let b = Outbox::new(b_db.clone(), b_cache.clone(), "b")
        .listening_through(Database::connect(via_proxy.as_str(), 2).unwrap());
    let idle = Policy {
        idle: Duration::from_secs(3600),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    tokio::spawn(relay::run(b.clone(), idle, shutdown.clone()));
    tokio::spawn(b.clone().listen(shutdown.clone()));
    assert!(eventually(Duration::from_secs(10), async || listeners(&b_db).await > 0).await);

    let key = CacheKey::user_by_email("ann@example.com");
    // Cached, and served from Redis once the start's hold is lifted.
    assert!(
        eventually(Duration::from_secs(10), async || {
            read(&b_cache, &key, "old").await == "old" && read(&b_cache, &key, "new").await == "old"
        })
        .await
    );

    proxy.freeze();
    redis.refuse_writes(true);
    let a_db = Database::connect(database.url(), 2).unwrap();
    let a = Outbox::new(a_db.clone(), cache(&redis.url(), &prefix), "a");
    let mut conn = a_db.conn().await.unwrap();
    let recorded = conn
        .transaction::<_, DbError, _>(async |conn| {
            Outbox::record(conn, Invalidation::user_create("ann@example.com")).await
        })
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        a.apply(recorded).await,
        Settled::Held,
        "refused, others told"
    );

    let held = eventually(Duration::from_secs(10), async || {
        read(&b_cache, &key, "new").await == "new"
    })
    .await;
    assert!(held, "B kept serving the value A's pending row deletes");
    // Held, not lucky: every read now loads, until the row is applied.
    for _ in 0..20 {
        assert_eq!(read(&b_cache, &key, "new").await, "new");
    }
    redis.refuse_writes(false);
    proxy.thaw();
    shutdown.trigger();
}
