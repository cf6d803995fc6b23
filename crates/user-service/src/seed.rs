//! Idempotent demo data: fixed ids and emails, inserted only when absent,
//! each recording the cache invalidation it causes like any write (applied
//! by the service's outbox relay: at its next start or on its next tick).

use cache_core::Invalidation;
use diesel_async::AsyncConnection;
use huddle_db::{Database, DbError};
use huddle_serve::Outbox;
use uuid::Uuid;

use crate::db::{self, NewUser};

/// `(id, name, email)` of every demo user. The first is the one `make run`
/// mints its demo token for.
pub fn demo_users() -> Vec<(Uuid, String, String)> {
    const NAMES: [&str; 12] = [
        "Ada Lovelace",
        "Grace Hopper",
        "Alan Turing",
        "Katherine Johnson",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Donald Knuth",
        "Margaret Hamilton",
        "Ken Thompson",
        "Frances Allen",
        "Leslie Lamport",
        "Radia Perlman",
    ];
    NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let id = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | (i as u128 + 1));
            let email = format!(
                "{}@demo.huddle.local",
                name.to_lowercase().replace(' ', ".")
            );
            (id, (*name).to_owned(), email)
        })
        .collect()
}

/// Inserts the demo users that are missing; calls `progress` after each.
/// Returns how many were inserted.
pub async fn seed(db: &Database, mut progress: impl FnMut(&str)) -> Result<usize, DbError> {
    let mut conn = db.conn().await?;
    let mut inserted = 0;
    for (id, name, email) in demo_users() {
        let new = NewUser {
            id,
            name: &name,
            email: &email,
            image: None,
        };
        let added = conn
            .transaction::<_, DbError, _>(async |conn| {
                if !db::insert_if_absent(conn, &new).await? {
                    return Ok(false);
                }
                // A fixed id, unlike the API's: a read of it (or of the
                // email) before the seed may have cached "not found".
                let invalidation = Invalidation::user_create(&email)
                    .merge(Invalidation::user_profile_update(id, &email, &email));
                let _pending = Outbox::record(conn, invalidation).await?;
                Ok(true)
            })
            .await?;
        inserted += usize::from(added);
        progress(&name);
    }
    Ok(inserted)
}
