//! `huddle seed` writes like any other write: each demo user it inserts
//! records its invalidation in the transaction, so a "not found" cached
//! before the seed (the demo ids and emails are fixed, so anyone may have
//! asked for them) does not outlive it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, eventually};

/// Seen to fail before the seed recorded its invalidations: after the
/// relay's ticks both reads still answered the cached 404 (the marker
/// lives 30 s; this waits 12 s, two relay ticks and more).
#[tokio::test]
async fn seeded_users_replace_cached_not_found_markers() {
    let app = TestApp::spawn().await;
    let (id, _, email) = user_service::seed::demo_users().remove(0);
    let by_id = format!("/api/users/{id}");
    let by_email = format!("/api/users/by-email?email={email}");
    let (user, admin) = (app.token_for(&id.to_string()), app.admin_token());
    assert_eq!(app.get(&by_id, &user).await.status, 404);
    assert_eq!(app.get(&by_email, &admin).await.status, 404);
    assert_eq!(
        app.keys_containing(&id.to_string()).await.len(),
        1,
        "marker cached"
    );

    let inserted = user_service::seed::seed(&app.user_db, |_| {})
        .await
        .unwrap();
    assert_eq!(inserted, user_service::seed::demo_users().len());

    // The running service's relay applies the rows on its idle tick.
    assert!(
        eventually(Duration::from_secs(12), async || {
            app.get(&by_id, &user).await.status == 200
                && app.get(&by_email, &admin).await.status == 200
        })
        .await,
        "a cached not-found outlived the seed"
    );
    // Seeding again inserts nothing and records nothing.
    assert_eq!(
        user_service::seed::seed(&app.user_db, |_| {})
            .await
            .unwrap(),
        0
    );
}
