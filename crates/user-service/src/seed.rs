//! Idempotent demo data: fixed ids and emails, inserted only when absent.

use huddle_db::{Database, DbError};
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
        if db::insert_if_absent(&mut conn, &new).await? {
            inserted += 1;
        }
        progress(&name);
    }
    Ok(inserted)
}
