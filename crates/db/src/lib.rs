//! Postgres plumbing for the services: database URLs, pools, embedded
//! migrations and the storage error mapping. Serving and the outbox live in
//! `huddle-serve`, test databases in `huddle-testkit`. The gateway never
//! depends on this crate.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager,
        deadpool::{Object, Pool, PoolError},
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

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
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Self::Unavailable(info.message().to_owned())
            }
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
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
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
    let mut conn = AsyncPgConnection::establish(&database_url(server_url, "postgres")?)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
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
    let mut conn = AsyncPgConnection::establish(&database_url(server_url, "postgres")?)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Runs the embedded migrations that have not run yet; returns how many ran.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations) -> Result<usize, DbError> {
    let conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
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
