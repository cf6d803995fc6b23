//! Throwaway databases for tests: each test gets its own database, so tests
//! run in parallel with no shared state and no `#[serial]`.
//!
//! Migrating a database from scratch for every test costs more than the
//! test; instead each test process migrates one template per migration set
//! once and every test clones it with `CREATE DATABASE … TEMPLATE`
//! (crates.io's test-db does the same). A template lives as long as its
//! process: a changed migration is never served from a stale one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;
use huddle_db::{DbError, create_database_if_missing, database_url, drop_database, run_migrations};
use tokio::sync::OnceCell;

/// The server URL tests use: `HUDDLE_DATABASE_URL`, or the local default.
pub fn server_url() -> String {
    std::env::var("HUDDLE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://huddle:huddle@127.0.0.1:5432".to_owned())
}

/// A migrated database that is dropped when this value is dropped.
pub struct TestDatabase {
    server_url: String,
    name: String,
    url: String,
}

type Templates = Mutex<HashMap<&'static str, Arc<OnceCell<String>>>>;

/// One template per database prefix (one prefix per migration set) and
/// process. A test fixture, not production state.
fn templates() -> &'static Templates {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(Templates::default)
}

impl TestDatabase {
    /// A fresh database with `migrations` applied, named after `prefix`.
    pub async fn create(
        prefix: &'static str,
        migrations: EmbeddedMigrations,
    ) -> Result<Self, DbError> {
        let server_url = server_url();
        let cell = templates()
            .lock()
            .map_err(|_| DbError::Unavailable("template registry poisoned".into()))?
            .entry(prefix)
            .or_default()
            .clone();
        let template = cell
            .get_or_try_init(|| make_template(&server_url, prefix, migrations))
            .await?;
        let name = test_name(prefix, "");
        clone_database(&server_url, template, &name).await?;
        let url = database_url(&server_url, &name)?;
        Ok(Self {
            server_url,
            name,
            url,
        })
    }

    /// A fresh database migrated from scratch (no template), for tests of
    /// migrating itself.
    pub async fn create_migrated(
        prefix: &str,
        migrations: EmbeddedMigrations,
    ) -> Result<Self, DbError> {
        let server_url = server_url();
        sweep_abandoned(&server_url).await;
        let name = test_name(prefix, "");
        create_database_if_missing(&server_url, &name).await?;
        let url = database_url(&server_url, &name)?;
        run_migrations(&url, migrations).await?;
        Ok(Self {
            server_url,
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `{prefix}_test_{unix secs}_{kind}{random}`: the creation time lets a
/// later run sweep what a killed process left behind.
fn test_name(prefix: &str, kind: &str) -> String {
    format!(
        "{prefix}_test_{}_{kind}{}",
        unix_secs(),
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

async fn make_template(
    server_url: &str,
    prefix: &str,
    migrations: EmbeddedMigrations,
) -> Result<String, DbError> {
    sweep_abandoned(server_url).await;
    let name = test_name(prefix, "tpl");
    create_database_if_missing(server_url, &name).await?;
    run_migrations(&database_url(server_url, &name)?, migrations).await?;
    Ok(name)
}

/// Postgres refuses to copy a database anyone is connected to; the
/// migration connection's backend may take a moment to exit after it
/// closed, so that one refusal is retried.
async fn clone_database(server_url: &str, template: &str, name: &str) -> Result<(), DbError> {
    let mut conn = AsyncPgConnection::establish(&database_url(server_url, "postgres")?)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    let mut attempts = 0;
    loop {
        let result = diesel::sql_query(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .execute(&mut conn)
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if attempts < 50 && e.to_string().contains("being accessed by other users") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A test process killed outright never runs `Drop`; its databases would
/// pile up. Names carry their creation time, so any test database older
/// than an hour (longer than any test run) is dropped by the next test that
/// starts. Failures here never fail a test.
async fn sweep_abandoned(server_url: &str) {
    use diesel::{QueryableByName, sql_types::Text};

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }

    let Ok(url) = database_url(server_url, "postgres") else {
        return;
    };
    let Ok(mut conn) = AsyncPgConnection::establish(&url).await else {
        return;
    };
    let names: Vec<Name> =
        diesel::sql_query(r"SELECT datname::text FROM pg_database WHERE datname LIKE '%\_test\_%'")
            .load(&mut conn)
            .await
            .unwrap_or_default();
    drop(conn);
    let now = unix_secs();
    for Name { datname } in names {
        if created_at(&datname).is_some_and(|t| now.saturating_sub(t) > ABANDONED_AFTER_SECS) {
            let _ = drop_database(server_url, &datname).await;
        }
    }
}

const ABANDONED_AFTER_SECS: u64 = 3600;

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The creation time in a name made by [`TestDatabase::create`].
fn created_at(name: &str) -> Option<u64> {
    name.split("_test_").nth(1)?.split('_').next()?.parse().ok()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // a short-lived thread with its own runtime does the async cleanup.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(drop_database(&server_url, &name));
            }
        });
        let _ = handle.join();
    }
}

/// Differences between a `schema.rs` (diesel's `table!` text) and the
/// columns of the migrated database at `url`; empty when they agree.
///
/// diesel's CLI is not part of the toolchain here, so instead of diffing
/// `diesel print-schema` output this reads `information_schema` and checks
/// every table, column, type and nullability `schema.rs` declares — and that
/// the database has no column `schema.rs` lacks.
pub async fn schema_drift(url: &str, schema_rs: &str) -> Result<Vec<String>, DbError> {
    use diesel::{QueryableByName, sql_types::Text};

    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        column_name: String,
        #[diesel(sql_type = Text)]
        data_type: String,
        #[diesel(sql_type = Text)]
        is_nullable: String,
    }

    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .load(&mut conn)
    .await?;
    let actual: Vec<(String, String, String, bool)> = columns
        .into_iter()
        .map(|c| {
            (
                c.table_name,
                c.column_name,
                c.data_type,
                c.is_nullable == "YES",
            )
        })
        .collect();
    let declared = parse_schema_rs(schema_rs);

    let mut drift = Vec::new();
    for (table, column, sql_type, nullable) in &declared {
        match actual.iter().find(|(t, c, ..)| t == table && c == column) {
            None => drift.push(format!(
                "{table}.{column}: in schema.rs, not in the database"
            )),
            Some((_, _, data_type, db_nullable)) => {
                if pg_type(sql_type) != Some(data_type.as_str()) {
                    drift.push(format!(
                        "{table}.{column}: schema.rs says {sql_type}, database has {data_type}"
                    ));
                }
                if nullable != db_nullable {
                    drift.push(format!(
                        "{table}.{column}: nullability differs (schema.rs nullable={nullable})"
                    ));
                }
            }
        }
    }
    for (table, column, ..) in &actual {
        if !declared.iter().any(|(t, c, ..)| t == table && c == column) {
            drift.push(format!(
                "{table}.{column}: in the database, not in schema.rs"
            ));
        }
    }
    Ok(drift)
}

/// `(table, column, diesel type, nullable)` from `table!` blocks.
fn parse_schema_rs(text: &str) -> Vec<(String, String, String, bool)> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" (").filter(|_| line.ends_with('{')) {
            table = Some(name.trim().to_owned());
        } else if let (Some(t), Some((column, ty))) = (&table, line.split_once(" -> ")) {
            let ty = ty.trim_end_matches(',').trim();
            let (ty, nullable) = match ty
                .strip_prefix("Nullable<")
                .and_then(|t| t.strip_suffix('>'))
            {
                Some(inner) => (inner, true),
                None => (ty, false),
            };
            out.push((t.clone(), column.trim().to_owned(), ty.to_owned(), nullable));
        } else if line == "}" {
            table = None;
        }
    }
    out
}

fn pg_type(diesel_type: &str) -> Option<&'static str> {
    Some(match diesel_type {
        "Uuid" => "uuid",
        "Text" | "Varchar" => "text",
        "Timestamptz" => "timestamp with time zone",
        "Timestamp" => "timestamp without time zone",
        "Int4" => "integer",
        "Int8" => "bigint",
        "Int2" => "smallint",
        "Bool" => "boolean",
        "Jsonb" => "jsonb",
        "Bytea" => "bytea",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_database_names_carry_their_creation_time() {
        assert_eq!(
            created_at("huddle_user_test_1795730886_0123456789abcdef"),
            Some(1_795_730_886)
        );
        assert_eq!(created_at("huddle_user"), None);
        assert_eq!(
            created_at("huddle_user_test_0b5c4f"),
            None,
            "older naming is left alone"
        );
    }

    #[test]
    fn parses_table_macro_text() {
        let text = "diesel::table! {\n    users (id) {\n        id -> Uuid,\n        image -> Nullable<Text>,\n    }\n}\n";
        assert_eq!(
            parse_schema_rs(text),
            vec![
                ("users".into(), "id".into(), "Uuid".into(), false),
                ("users".into(), "image".into(), "Text".into(), true),
            ]
        );
    }
}
