//! One-shot commands: migrate, seed, token.

use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    config::{Global, MigrateArgs, TokenArgs},
    run::CmdResult,
};

pub async fn migrate(global: &Global, args: &MigrateArgs) -> CmdResult {
    if args.check {
        return check_migrated(global, args.wait).await;
    }
    let ran = user_service::migrate(&global.database_url).await?;
    println!(
        "{}: {ran} migration(s) applied",
        user_service::DATABASE_NAME
    );
    let ran = meeting_service::migrate(&global.database_url).await?;
    println!(
        "{}: {ran} migration(s) applied",
        meeting_service::DATABASE_NAME
    );
    let ran = recording_service::migrate(&global.database_url).await?;
    println!(
        "{}: {ran} migration(s) applied",
        recording_service::DATABASE_NAME
    );
    let ran = chat_service::migrate(&global.database_url).await?;
    println!(
        "{}: {ran} migration(s) applied",
        chat_service::DATABASE_NAME
    );
    Ok(())
}

/// `migrate --check [--wait S]`: read-only, so it runs with the runtime
/// (DML-only) role as an init container and holds a new release's pods back
/// until the migration Job of that release has finished.
async fn check_migrated(global: &Global, wait_secs: u64) -> CmdResult {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    let databases = [
        (user_service::DATABASE_NAME, &user_service::MIGRATIONS),
        (meeting_service::DATABASE_NAME, &meeting_service::MIGRATIONS),
        (
            recording_service::DATABASE_NAME,
            &recording_service::MIGRATIONS,
        ),
        (chat_service::DATABASE_NAME, &chat_service::MIGRATIONS),
    ];
    loop {
        let mut behind = Vec::new();
        for (name, migrations) in databases {
            let url = huddle_db::database_url(&global.database_url, name)?;
            match huddle_db::pending_migrations(&url, migrations).await {
                Ok(0) => {}
                Ok(n) => behind.push(format!("{name}: {n} migration(s) pending")),
                // A database not created yet, or not reachable yet: behind too.
                Err(e) => behind.push(format!("{name}: {e}")),
            }
        }
        if behind.is_empty() {
            println!("schema current: every database has every migration of this binary");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("schema behind this binary: {}", behind.join("; ")).into());
        }
        eprintln!("waiting for migrations: {}", behind.join("; "));
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

pub async fn seed(global: &Global) -> CmdResult {
    let url = huddle_db::database_url(&global.database_url, user_service::DATABASE_NAME)?;
    let db = huddle_db::Database::connect(&url, 1)?;
    let total = user_service::seed::demo_users().len();
    let bar = ProgressBar::new(total as u64).with_style(ProgressStyle::with_template(
        "seeding users {bar:30} {pos}/{len} {msg}",
    )?);
    let inserted = user_service::seed::seed(&db, |name| {
        bar.set_message(name.to_owned());
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "users: {inserted} inserted, {} already present",
        total - inserted
    );
    db.close();
    seed_meetings(global).await
}

/// Demo meetings hosted and joined by the demo users. Their cache
/// invalidations go through the meeting service's outbox, applied when it
/// next starts, so a running cache never keeps a pre-seed list.
async fn seed_meetings(global: &Global) -> CmdResult {
    let url = huddle_db::database_url(&global.database_url, meeting_service::DATABASE_NAME)?;
    let db = huddle_db::Database::connect(&url, 1)?;
    let users: Vec<_> = user_service::seed::demo_users()
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    let total = meeting_service::seed::demo_meetings().len();
    let bar = ProgressBar::new(total as u64).with_style(ProgressStyle::with_template(
        "seeding meetings {bar:30} {pos}/{len} {msg}",
    )?);
    let inserted = meeting_service::seed::seed(&db, &users, |title| {
        bar.set_message(title.to_owned());
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "meetings: {inserted} inserted, {} already present",
        total - inserted
    );
    db.close();
    seed_chats(global, &users).await
}

/// A few messages in the demo meetings that have started, posted by their
/// hosts and participants in turn.
async fn seed_chats(global: &Global, users: &[uuid::Uuid]) -> CmdResult {
    let url = huddle_db::database_url(&global.database_url, chat_service::DATABASE_NAME)?;
    let db = huddle_db::Database::connect(&url, 1)?;
    let meetings: Vec<_> = meeting_service::seed::demo_meetings()
        .into_iter()
        .filter(|m| m.status != meeting_service::db::Status::Scheduled)
        .map(|m| {
            let posters = std::iter::once(m.host)
                .chain(m.participants.iter().copied())
                .filter_map(|i| users.get(i).copied())
                .collect();
            (m.id, posters)
        })
        .collect();
    let inserted = chat_service::seed::seed(&db, &meetings).await?;
    println!("chat messages: {inserted} inserted");
    db.close();
    Ok(())
}

pub fn token(global: &Global, args: &TokenArgs) -> CmdResult {
    let secret = global.jwt_secret(true)?;
    let subject = match args.user {
        Some(id) => id.to_string(),
        None => "admin".to_owned(),
    };
    let token = gateway::auth::mint_token(&secret, &subject, args.admin, args.ttl)?;
    println!("{token}");
    Ok(())
}
