//! Idempotent demo data: a few messages in the demo meetings that have
//! started, with fixed ids, inserted only when absent, each recording the
//! cache invalidation it causes (applied by the service's outbox relay at
//! its next start).

use cache_core::Invalidation;
use diesel_async::AsyncConnection;
use huddle_db::{Database, DbError};
use huddle_serve::Outbox;
use uuid::Uuid;

use crate::db::{self, MessageRow};

const LINES: [&str; 4] = [
    "Hi all, joining from the train: audio only for a bit.",
    "Notes are in the shared doc.",
    "Can everyone see my screen?",
    "Thanks, see you next week!",
];

/// The demo message `n` of `meeting`: a fixed id, so seeding twice adds
/// nothing. `n` goes to bits the demo meeting ids leave at zero (they
/// differ in their low bits), so no two demo messages share an id.
fn message_id(meeting: Uuid, n: usize) -> Uuid {
    Uuid::from_u128(meeting.as_u128() ^ (0xc4a7_u128 << 80) ^ ((n as u128 + 1) << 32))
}

/// Posts the demo lines in each `(meeting, posters)` (posters take turns),
/// skipping those already there. Returns how many were inserted.
pub async fn seed(db: &Database, meetings: &[(Uuid, Vec<Uuid>)]) -> Result<usize, DbError> {
    let mut conn = db.conn().await?;
    let mut inserted = 0;
    for (meeting, posters) in meetings {
        if posters.is_empty() {
            continue;
        }
        for (n, line) in LINES.iter().enumerate() {
            let id = message_id(*meeting, n);
            let added = conn
                .transaction::<_, DbError, _>(async |conn| {
                    if db::find(conn, *meeting, id).await?.is_some() {
                        return Ok(false);
                    }
                    let Some(sent_at) = db::next_sent_at(conn, *meeting).await? else {
                        return Ok(false);
                    };
                    let row = MessageRow {
                        id,
                        meeting_id: *meeting,
                        user_id: posters[n % posters.len()],
                        message: (*line).to_owned(),
                        sent_at,
                    };
                    let pending =
                        Outbox::record(conn, Invalidation::chat_message(*meeting, None)).await?;
                    db::insert(conn, &row, Some(pending.id())).await?;
                    Ok(true)
                })
                .await?;
            inserted += usize::from(added);
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seen to fail (8 distinct ids of 20) with `n` xored into the low bits,
    /// where the demo meeting ids differ.
    #[test]
    fn demo_message_ids_are_distinct_across_meetings() {
        let meetings =
            (1..=5).map(|n| Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0001_0000 | n));
        let mut ids: Vec<Uuid> = meetings
            .flat_map(|m| (0..LINES.len()).map(move |n| message_id(m, n)))
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all);
    }
}
