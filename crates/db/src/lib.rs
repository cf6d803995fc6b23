//! Postgres plumbing for the services: database URLs, pools, embedded
//! migrations and the storage error mapping. Serving and the outbox live in
//! `huddle-serve`, test databases in `huddle-testkit`. The gateway never
//! depends on this crate.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use diesel::migration::MigrationSource;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{
    AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig,
        deadpool::{Object, Pool, PoolError},
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures::FutureExt;

pub mod pool_metrics;
pub mod tls;

pub use tls::establish;

pub type PgPool = Pool<AsyncPgConnection>;
pub type PgConn = Object<AsyncPgConnection>;

/// Storage-layer errors. diesel's `NotFound` and unique violations are mapped
/// here, once, so services match on meaning rather than on diesel internals.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("row not found")]
    NotFound,
    #[error("unique constraint {constraint} violated")]
    Unique { constraint: String },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(DieselError),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Self::Unique {
                constraint: info.constraint_name().unwrap_or_default().to_owned(),
            },
            // The connection broke (diesel-async reports a lost socket as
            // "unable to send command"), or a failover left it on a
            // demoted, read-only server: the database is unavailable, which
            // callers answer with 503, not 500.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction,
                info,
            ) => Self::Unavailable(info.message().to_owned()),
            other => Self::Query(other),
        }
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// The URL of database `name` on the server at `server_url` (whose own path,
/// if any, is replaced): one server setting serves every service.
pub fn database_url(server_url: &str, name: &str) -> Result<String, DbError> {
    let mut url = url::Url::parse(server_url)
        .map_err(|e| DbError::Unavailable(format!("invalid database URL {server_url:?}: {e}")))?;
    url.set_path(name);
    Ok(url.to_string())
}

/// A service's handle on its own database: a pool, plus a count of connection
/// checkouts. Every query function takes a connection from here, so the count
/// is the number of database round trips a request caused — which is how tests
/// prove that a cached read did not touch Postgres.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    checkouts: Arc<AtomicU64>,
    /// Whether this handle's checkouts are counted: background work (relays)
    /// uses an untracked handle so the count is the requests' own queries.
    tracked: bool,
}

impl Database {
    pub fn connect(url: &str, max_size: usize) -> Result<Self, DbError> {
        // Parsed once: a bad sslmode or CA file fails here, at start, and the
        // trust store is not re-read for every connection the pool opens.
        let target = tls::PgTarget::parse(url)?;
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(move |_| {
            let target = target.clone();
            async move { target.connect().await }.boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_runtime())
            .build()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            checkouts: Arc::default(),
            tracked: true,
        })
    }

    /// The same pool, for background work whose queries must not count as
    /// a request's (the relays' ticks would otherwise make counting tests
    /// fail at random under load).
    pub fn untracked(&self) -> Self {
        Self {
            tracked: false,
            ..self.clone()
        }
    }

    pub async fn conn(&self) -> Result<PgConn, DbError> {
        if self.tracked {
            self.checkouts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(self.pool.get().await?)
    }

    pub fn checkouts(&self) -> u64 {
        AtomicU64::load(&self.checkouts, Ordering::Relaxed)
    }

    /// Cheap liveness probe for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    /// How many of `migrations` this database lacks (see [`pending_migrations`]).
    pub async fn pending_migrations(
        &self,
        migrations: &EmbeddedMigrations,
    ) -> Result<usize, DbError> {
        let mut conn = self.pool.get().await?;
        pending_on(&mut conn, migrations).await
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

fn deadpool_runtime() -> deadpool::Runtime {
    deadpool::Runtime::Tokio1
}

/// Creates database `name` on the server unless it exists. Connects to the
/// server's `postgres` database to do so.
pub async fn create_database_if_missing(server_url: &str, name: &str) -> Result<(), DbError> {
    validate_identifier(name)?;
    let mut conn = establish(&database_url(server_url, "postgres")?).await?;
    let exists: i64 = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM pg_database WHERE datname = '{name}')"
    )))
    .get_result(&mut conn)
    .await?;
    if exists == 0 {
        match diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .map_err(DbError::from)
        {
            // Another process created it between our check and our CREATE.
            Ok(_) | Err(DbError::Unique { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Drops database `name`, disconnecting anyone still using it.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), DbError> {
    validate_identifier(name)?;
    let mut conn = establish(&database_url(server_url, "postgres")?).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Key of the session-level advisory lock held while migrating. Advisory
/// locks are per database, so one constant serves every service's database.
/// ("huddle:migrate" folded into an i64; any fixed value would do.)
pub const MIGRATION_LOCK_KEY: i64 = 0x6875_6464_6c65_6d67;

/// Creates a service's database `name` on the server if missing and runs
/// its pending migrations; returns how many ran.
pub async fn migrate_database(
    server_url: &str,
    name: &str,
    migrations: EmbeddedMigrations,
) -> Result<usize, DbError> {
    create_database_if_missing(server_url, name).await?;
    run_migrations(&database_url(server_url, name)?, migrations).await
}

/// Runs the embedded migrations that have not run yet; returns how many ran.
///
/// Holds `pg_advisory_lock(MIGRATION_LOCK_KEY)` for the whole run, so two
/// runners (a retried Job, a second release, an operator) serialize: the
/// second waits, then finds nothing pending. The lock is tied to the session
/// and so is released however the run ends.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations) -> Result<usize, DbError> {
    let mut conn = establish(url).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await?;
    // The harness drives diesel's sync migration code with `block_in_place`;
    // give it a blocking thread so it also works from any runtime flavour.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(migrations)
            .map(|ran| ran.len())
            .map_err(|e| DbError::Unavailable(format!("migration failed: {e}")))
    })
    .await
    .map_err(|e| DbError::Unavailable(format!("migration task failed: {e}")))?
}

#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// How many of `migrations` the database at `url` has not applied yet
/// (all of them when it was never migrated). Read-only — it never creates
/// diesel's bookkeeping table, unlike the harness — so a DML-only role can
/// ask it, and a readiness check or `huddle migrate --check` can poll it.
pub async fn pending_migrations(
    url: &str,
    migrations: &EmbeddedMigrations,
) -> Result<usize, DbError> {
    let mut conn = establish(url).await?;
    pending_on(&mut conn, migrations).await
}

pub(crate) async fn pending_on(
    conn: &mut AsyncPgConnection,
    migrations: &EmbeddedMigrations,
) -> Result<usize, DbError> {
    // Versions only: the boxed migrations are not Send, and readiness checks
    // run in spawned tasks.
    let known: Vec<String> = MigrationSource::<diesel::pg::Pg>::migrations(migrations)
        .map_err(|e| DbError::Unavailable(format!("embedded migrations: {e}")))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let present: bool = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "to_regclass('__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(conn)
    .await?;
    let applied: Vec<AppliedVersion> = if present {
        diesel::sql_query("SELECT version::text AS version FROM __diesel_schema_migrations")
            .load(conn)
            .await?
    } else {
        Vec::new()
    };
    let applied: std::collections::HashSet<String> =
        applied.into_iter().map(|a| a.version).collect();
    Ok(known.iter().filter(|v| !applied.contains(*v)).count())
}

fn validate_identifier(name: &str) -> Result<(), DbError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DbError::Unavailable(format!(
            "invalid database name {name:?}"
        )))
    }
}
