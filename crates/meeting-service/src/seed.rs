//! Idempotent demo data: fixed meeting ids, inserted only when absent, each
//! with the cache invalidation it causes recorded in its transaction (the
//! service's outbox relay applies it at its next start).

use cache_core::Invalidation;
use chrono::Utc;
use diesel_async::AsyncConnection;
use huddle_db::{Database, DbError};
use huddle_serve::Outbox;
use uuid::Uuid;

use crate::{
    db::{self, NewMeeting, Status},
    invite,
};

/// A demo meeting; users are indexes into the hosts passed to [`seed`].
pub struct DemoMeeting {
    pub id: Uuid,
    pub title: &'static str,
    pub description: Option<&'static str>,
    pub host: usize,
    pub status: Status,
    /// From now.
    pub scheduled_in_hours: i64,
    pub participants: &'static [usize],
}

pub fn demo_meetings() -> Vec<DemoMeeting> {
    let id = |n: u128| Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0001_0000 | n);
    vec![
        DemoMeeting {
            id: id(1),
            title: "Weekly engineering sync",
            description: Some("Status, blockers, and the release train."),
            host: 0,
            status: Status::Scheduled,
            scheduled_in_hours: 24,
            participants: &[],
        },
        DemoMeeting {
            id: id(2),
            title: "Design review: cache invalidation",
            description: Some("Walk through SPEC §5 row by row."),
            host: 1,
            status: Status::Scheduled,
            scheduled_in_hours: 48,
            participants: &[],
        },
        DemoMeeting {
            id: id(3),
            title: "Compiler office hours",
            description: None,
            host: 2,
            status: Status::Live,
            scheduled_in_hours: 0,
            participants: &[3, 4, 5],
        },
        DemoMeeting {
            id: id(4),
            title: "Distributed systems reading group",
            description: Some("This week: Lamport clocks."),
            host: 10,
            status: Status::Live,
            scheduled_in_hours: 0,
            participants: &[0, 6],
        },
        DemoMeeting {
            id: id(5),
            title: "Launch retrospective",
            description: None,
            host: 7,
            status: Status::Ended,
            scheduled_in_hours: 0,
            participants: &[8, 9],
        },
    ]
}

/// Inserts the demo meetings that are missing; `hosts` are the user ids the
/// demo's user indexes refer to. Calls `progress` after each meeting and
/// returns how many were inserted.
pub async fn seed(
    db: &Database,
    users: &[Uuid],
    mut progress: impl FnMut(&str),
) -> Result<usize, DbError> {
    let user = |i: usize| {
        users
            .get(i)
            .copied()
            .ok_or_else(|| DbError::Unavailable(format!("seed: no demo user #{i}")))
    };
    let mut conn = db.conn().await?;
    let mut inserted = 0;
    for demo in demo_meetings() {
        let host = user(demo.host)?;
        let participants = demo
            .participants
            .iter()
            .map(|i| user(*i))
            .collect::<Result<Vec<_>, _>>()?;
        let code = invite::generate();
        let new = NewMeeting {
            id: demo.id,
            title: demo.title,
            description: demo.description,
            host_id: host,
            invite_code: &code,
            scheduled_at: Utc::now() + chrono::Duration::hours(demo.scheduled_in_hours),
        };
        let live = demo.status != Status::Scheduled;
        let added = conn
            .transaction::<_, DbError, _>(async |conn| {
                if !db::insert_meeting_if_absent(conn, &new, live).await? {
                    return Ok(false);
                }
                let mut invalidation = Invalidation::meeting_create(host, &code, live);
                if live {
                    for user in std::iter::once(host).chain(participants.iter().copied()) {
                        db::insert_participant(conn, Uuid::new_v4(), demo.id, user).await?;
                        invalidation =
                            invalidation.merge(Invalidation::participant_join_leave(demo.id, user));
                    }
                }
                if demo.status == Status::Ended {
                    db::set_status(conn, demo.id, Status::Ended).await?;
                    db::leave_all(conn, demo.id).await?;
                }
                // Applied by the service's outbox relay when it next runs.
                let _pending = Outbox::record(conn, invalidation).await?;
                Ok(true)
            })
            .await?;
        if added {
            inserted += 1;
        }
        progress(demo.title);
    }
    Ok(inserted)
}
