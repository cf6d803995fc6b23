//! `schema.rs` and the migrations cannot drift apart unnoticed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use huddle_testkit::database::{TestDatabase, schema_drift};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_rs_matches_the_migrated_database() {
    let db = TestDatabase::create("huddle_meeting", meeting_service::MIGRATIONS)
        .await
        .unwrap();
    let drift = schema_drift(db.url(), &schema_rs()).await.unwrap();
    assert!(drift.is_empty(), "schema drift:\n{}", drift.join("\n"));
}

/// The service's `schema.rs` plus the kit's tables (outbox, idempotency keys).
fn schema_rs() -> String {
    format!(
        "{}{}{}",
        include_str!("../src/schema.rs"),
        huddle_serve::outbox::SCHEMA_RS,
        huddle_serve::idempotency::SCHEMA_RS
    )
}
