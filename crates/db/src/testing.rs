//! Throwaway databases for tests: each test gets its own freshly migrated
//! database, so tests run in parallel with no shared state and no `#[serial]`.

use diesel_migrations::EmbeddedMigrations;

use crate::{DbError, create_database_if_missing, database_url, drop_database, run_migrations};

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

impl TestDatabase {
    pub async fn create(prefix: &str, migrations: EmbeddedMigrations) -> Result<Self, DbError> {
        let server_url = server_url();
        let name = format!("{prefix}_test_{}", uuid::Uuid::new_v4().simple());
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
