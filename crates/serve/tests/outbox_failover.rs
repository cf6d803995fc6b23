//! The outbox across a Redis failover: an apply no replica acknowledged is
//! not an apply (issue 19, finding 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use cache_core::{Cache, CacheConfig, CacheKey, CacheMetrics, Invalidation, WaitReplicas};
use diesel_async::AsyncConnection;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use huddle_db::{Database, DbError};
use huddle_serve::Outbox;
use huddle_testkit::{TestRedis, database::TestDatabase, link::FrozenLink, proxy::TcpProxy};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn read(cache: &Cache, key: &CacheKey, db: &str, loads: &AtomicUsize) -> String {
    cache
        .get_or_load(key, key.ttl(), &[], || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(Some(db.to_owned()))
        })
        .await
        .unwrap()
        .unwrap()
}

/// The replication link stalls (open, silent) before a profile update: the
/// primary deletes the user's key but no replica acknowledges it, so the
/// row stays pending and reads are held (served from Postgres, nothing
/// filled). The replica, which still has the old value, is then promoted
/// behind the same endpoint: no read serves the old value, and the relay
/// applies the row on the new primary.
///
/// Seen to fail with `wait_replicas: Off` (the behaviour before): the row
/// was deleted at once (0 pending), the apply counted though the DEL never
/// left the primary that was about to be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_no_replica_acknowledged_stays_pending_and_holds_reads() {
    let primary = TestRedis::start();
    let link = FrozenLink::start(loopback(primary.port())).await.unwrap();
    let link_port = link.port();
    let replica = tokio::task::spawn_blocking(move || TestRedis::replica_of(link_port))
        .await
        .unwrap();
    let endpoint = TcpProxy::start(loopback(primary.port())).await.unwrap();
    let database = TestDatabase::create("huddle_serve", MIGRATIONS)
        .await
        .unwrap();
    let cache = Cache::new(
        &CacheConfig {
            redis_url: format!("redis://{}", endpoint.addr()),
            prefix: format!("huddle:test-{}:", uuid::Uuid::new_v4().simple()),
            op_timeout: Duration::from_millis(200),
            wait_replicas: WaitReplicas::Auto,
            wait_timeout: Duration::from_millis(50),
            ..CacheConfig::default()
        },
        CacheMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let db = Database::connect(database.url(), 4).unwrap();
    let outbox = Outbox::new(db.clone(), cache.clone(), "user");
    outbox.drain().await.unwrap(); // nothing pending: reads released

    let user = uuid::Uuid::new_v4();
    let key = CacheKey::user(user);
    let raw = cache.redis_key(key.path());
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&cache, &key, "v1", &loads).await, "v1");
    let replicated = huddle_testkit::eventually(Duration::from_secs(5), async || {
        replica
            .command(&["GET", &raw])
            .is_some_and(|v| v.contains("v1"))
    })
    .await;
    assert!(replicated);

    link.freeze();
    let mut conn = db.conn().await.unwrap();
    let recorded = conn
        .transaction::<_, DbError, _>(async |conn| {
            Outbox::record(
                conn,
                Invalidation::user_profile_update(user, "a@example.com", "b@example.com"),
            )
            .await
        })
        .await
        .unwrap();
    drop(conn);
    outbox.apply(recorded).await;
    assert_eq!(
        outbox.pending().await.unwrap(),
        1,
        "an unreplicated apply counted"
    );
    let before = loads.load(Ordering::SeqCst);
    assert_eq!(read(&cache, &key, "v2", &loads).await, "v2");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        before + 1,
        "the read was not held"
    );
    assert_eq!(
        primary.command(&["EXISTS", &raw]).unwrap().trim(),
        "0",
        "a held read filled"
    );

    replica.promote();
    endpoint.point_at(loopback(replica.port()));
    endpoint.set_up(false);
    endpoint.set_up(true);
    for _ in 0..10 {
        assert_eq!(read(&cache, &key, "v2", &loads).await, "v2");
    }
    // The relay's pass applies the row on the new primary (no replicas: no
    // WAIT) and releases reads.
    assert_eq!(outbox.drain().await.unwrap(), 1);
    assert_eq!(outbox.pending().await.unwrap(), 0);
    assert_eq!(read(&cache, &key, "v2", &loads).await, "v2");
}
