//! Queries on `huddle_chat`. Plain async functions over a connection, so the
//! caller owns the transaction.
//!
//! Order: every read is by `(sent_at, id)`. A post locks its meeting's
//! `chat_meetings` row and takes a `sent_at` later than the last one
//! ([`next_sent_at`]), so per meeting the commit order is the key order:
//! whoever has seen a message has seen every message before it.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Int2, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::{Database, DbError};
use uuid::Uuid;

use crate::schema::{chat_meetings, chat_messages};

/// Postgres channel on which a post whose cache effects are applied (or
/// held for), or a committed delete, wakes every replica's streams of that
/// meeting (payload: the meeting id).
pub const CHANNEL: &str = "huddle_chat";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = chat_messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct MessageRow {
    pub id: Uuid,
    pub meeting_id: Uuid,
    pub user_id: Uuid,
    pub message: String,
    pub sent_at: DateTime<Utc>,
}

impl MessageRow {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            sent_at: self.sent_at,
            id: self.id,
        }
    }
}

/// A place in a meeting's message order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub sent_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(QueryableByName)]
struct Slot {
    #[diesel(sql_type = Timestamptz)]
    last_sent_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<DateTime<Utc>>,
}

/// Locks the meeting's chat row (creating it) until the transaction ends and
/// returns the `sent_at` of the message about to be inserted: the clock, or
/// a microsecond after the previous message if the clock is behind it.
/// `None` when the meeting was deleted (its tombstone is under the same
/// lock, so a delete either waits for this post and deletes it too, or has
/// committed and is seen here).
pub async fn next_sent_at(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let slot: Slot = diesel::sql_query(
        "INSERT INTO chat_meetings (meeting_id, last_sent_at) VALUES ($1, clock_timestamp()) \
         ON CONFLICT (meeting_id) DO UPDATE SET last_sent_at = CASE \
           WHEN chat_meetings.deleted_at IS NULL \
           THEN greatest(clock_timestamp(), chat_meetings.last_sent_at + interval '1 microsecond') \
           ELSE chat_meetings.last_sent_at END \
         RETURNING last_sent_at, deleted_at",
    )
    .bind::<SqlUuid, _>(meeting)
    .get_result(conn)
    .await?;
    Ok(slot.deleted_at.is_none().then_some(slot.last_sent_at))
}

/// Inserts a message; `outbox` is the outbox row of the cache effects it
/// must wait for before it is streamed (none for seeded rows).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    row: &MessageRow,
    outbox: Option<i64>,
) -> Result<(), DbError> {
    diesel::insert_into(chat_messages::table)
        .values((row, chat_messages::outbox_id.eq(outbox)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Where a message stands for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Its cache effects are applied (or it had none): stream it.
    Applied,
    /// Not applied yet, but its poster held its replica's reads and told
    /// every other replica to (the outbox's NOTIFY): stream it once this
    /// replica holds too.
    Held,
    /// Neither: nothing from it on may be streamed yet.
    Pending,
}

#[derive(QueryableByName)]
struct Delivered {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = Int2)]
    state: i16,
}

/// Up to `limit` messages after `cursor` with where each stands, oldest
/// first, read in one snapshot.
pub async fn after_with_delivery(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<(MessageRow, Delivery)>, DbError> {
    let rows: Vec<Delivered> = diesel::sql_query(
        "SELECT m.id, m.meeting_id, m.user_id, m.message, m.sent_at, \
           (CASE WHEN m.outbox_id IS NULL \
                   OR NOT EXISTS (SELECT 1 FROM cache_outbox o WHERE o.id = m.outbox_id) THEN 0 \
                 WHEN m.held THEN 1 ELSE 2 END)::int2 AS state \
         FROM chat_messages m \
         WHERE m.meeting_id = $1 AND ($2::timestamptz IS NULL OR (m.sent_at, m.id) > ($2, $3)) \
         ORDER BY m.sent_at, m.id LIMIT $4",
    )
    .bind::<SqlUuid, _>(meeting)
    .bind::<Nullable<Timestamptz>, _>(cursor.map(|c| c.sent_at))
    .bind::<SqlUuid, _>(cursor.map_or(Uuid::nil(), |c| c.id))
    .bind::<BigInt, _>(i64::from(limit))
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|d| {
            let state = match d.state {
                0 => Delivery::Applied,
                1 => Delivery::Held,
                _ => Delivery::Pending,
            };
            (d.message, state)
        })
        .collect())
}

#[derive(QueryableByName)]
struct Place {
    #[diesel(sql_type = Timestamptz)]
    sent_at: DateTime<Utc>,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Where a stream that starts now begins: after the newest message, or,
/// while a message still waits for its cache effects, just before the
/// oldest such one (so it is sent once it may be). `None`: from the first.
pub async fn stream_start(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
) -> Result<Option<Cursor>, DbError> {
    match oldest_pending(conn, meeting).await? {
        None => latest(conn, meeting).await,
        Some(place) => {
            let before = before(conn, meeting, Some(place), 1).await?;
            Ok(<[MessageRow]>::first(&before).map(MessageRow::cursor))
        }
    }
}

/// The oldest message of `meeting` whose cache effects are neither applied
/// nor held for ([`Delivery::Pending`]), if any.
pub async fn oldest_pending(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
) -> Result<Option<Cursor>, DbError> {
    let waiting: Option<Place> = diesel::sql_query(
        "SELECT m.sent_at, m.id FROM cache_outbox o \
         JOIN chat_messages m ON m.outbox_id = o.id \
         WHERE m.meeting_id = $1 AND NOT m.held \
         ORDER BY m.sent_at, m.id LIMIT 1",
    )
    .bind::<SqlUuid, _>(meeting)
    .get_result(conn)
    .await
    .optional()?;
    Ok(waiting.map(|p| Cursor {
        sent_at: p.sent_at,
        id: p.id,
    }))
}

/// After a post's apply: marks it `held` if its cache effects are held for
/// rather than applied, and wakes every replica's streams of its meeting.
pub async fn announce(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    message: Uuid,
    held: bool,
) -> Result<(), DbError> {
    // One statement: the mark is committed when the notification goes out.
    diesel::sql_query(
        "WITH marked AS (UPDATE chat_messages SET held = true WHERE id = $2 AND $3 RETURNING 1) \
         SELECT pg_notify($4, $1::text) FROM (SELECT count(*) FROM marked) AS done",
    )
    .bind::<SqlUuid, _>(meeting)
    .bind::<SqlUuid, _>(message)
    .bind::<diesel::sql_types::Bool, _>(held)
    .bind::<Text, _>(CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}

/// Wakes every replica's streams of `meeting` when the transaction commits.
pub async fn notify(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<(), DbError> {
    // A parsed uuid: nothing in it can end the literal.
    diesel::sql_query(format!("NOTIFY {CHANNEL}, '{meeting}'"))
        .execute(conn)
        .await?;
    Ok(())
}

/// The last `limit` messages, oldest first.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    limit: u32,
) -> Result<Vec<MessageRow>, DbError> {
    let mut rows = before(conn, meeting, None, limit).await?;
    rows.reverse();
    Ok(rows)
}

#[derive(QueryableByName)]
struct Shown {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    held: bool,
}

/// How long a read waits for the messages it would show to settle (a
/// post's apply takes at most its 300 ms budget plus one `WAIT`).
const SETTLE_WAIT: Duration = Duration::from_secs(2);
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Reads answered from Postgres (history, and the fills of the window and
/// the count) see a post at commit, before its window append and count
/// delete are applied: shown then, it could be followed by a cached
/// window or count without it (SPEC §6, "seen"). So such a read shows only
/// messages up to the newest one committed when it started, `P`, and
/// first waits until none of those is pending ([`Delivery`]): each is
/// applied, or held for (the caller holds its reads when it shows one).
/// Messages committed after `P` are left out (nobody can have seen them
/// before this read began). `below`: only messages before it matter (a
/// history page). `None`: the meeting has no message yet. Past
/// [`SETTLE_WAIT`] (a poster died between commit and apply and a relay
/// has not applied its row yet) the read answers 503 rather than show
/// less than a fill may already have shown.
pub async fn settled_through(
    db: &Database,
    meeting: Uuid,
    below: Option<Cursor>,
) -> Result<Option<Cursor>, DbError> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut conn = db.conn().await?;
    let Some(upto) = latest(&mut conn, meeting).await? else {
        return Ok(None);
    };
    loop {
        let pending = oldest_pending(&mut conn, meeting).await?;
        if pending.is_none_or(|p| p > upto || below.is_some_and(|b| p >= b)) {
            return Ok(Some(upto));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DbError::Unavailable(
                "a chat message's cache effects are still being applied; retry".into(),
            ));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Up to `limit` messages before `cursor` (all, without one) and at or
/// before `upto`, newest first; the flag: one of them is only held for.
pub async fn settled_before(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    cursor: Option<Cursor>,
    upto: Cursor,
    limit: u32,
) -> Result<(Vec<MessageRow>, bool), DbError> {
    let rows: Vec<Shown> = diesel::sql_query(
        "SELECT m.id, m.meeting_id, m.user_id, m.message, m.sent_at, \
           (m.held AND EXISTS (SELECT 1 FROM cache_outbox o WHERE o.id = m.outbox_id)) AS held \
         FROM chat_messages m \
         WHERE m.meeting_id = $1 AND (m.sent_at, m.id) <= ($4, $5) \
           AND ($2::timestamptz IS NULL OR (m.sent_at, m.id) < ($2, $3)) \
         ORDER BY m.sent_at DESC, m.id DESC LIMIT $6",
    )
    .bind::<SqlUuid, _>(meeting)
    .bind::<Nullable<Timestamptz>, _>(cursor.map(|c| c.sent_at))
    .bind::<SqlUuid, _>(cursor.map_or(Uuid::nil(), |c| c.id))
    .bind::<Timestamptz, _>(upto.sent_at)
    .bind::<SqlUuid, _>(upto.id)
    .bind::<BigInt, _>(i64::from(limit))
    .load(conn)
    .await?;
    let held = rows.iter().any(|r| r.held);
    Ok((rows.into_iter().map(|r| r.message).collect(), held))
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    held: bool,
}

/// How many messages are at or before `upto`, and whether one of them is
/// only held for.
pub async fn count_through(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    upto: Cursor,
) -> Result<(i64, bool), DbError> {
    let counted: Counted = diesel::sql_query(
        "SELECT (SELECT count(*) FROM chat_messages m \
                 WHERE m.meeting_id = $1 AND (m.sent_at, m.id) <= ($2, $3)) AS n, \
           EXISTS (SELECT 1 FROM cache_outbox o JOIN chat_messages h ON h.outbox_id = o.id \
                   WHERE h.meeting_id = $1 AND h.held AND (h.sent_at, h.id) <= ($2, $3)) AS held",
    )
    .bind::<SqlUuid, _>(meeting)
    .bind::<Timestamptz, _>(upto.sent_at)
    .bind::<SqlUuid, _>(upto.id)
    .get_result(conn)
    .await?;
    Ok((counted.n, counted.held))
}

/// The message `id` of `meeting`, if there is one.
pub async fn find(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    id: Uuid,
) -> Result<Option<MessageRow>, DbError> {
    Ok(chat_messages::table
        .filter(chat_messages::id.eq(id))
        .filter(chat_messages::meeting_id.eq(meeting))
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Up to `limit` messages before `cursor` (all, without one), newest first.
pub async fn before(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<MessageRow>, DbError> {
    page(conn, meeting, cursor, limit, Direction::Older).await
}

/// Up to `limit` messages after `cursor` (from the first, without one),
/// oldest first.
pub async fn after(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<MessageRow>, DbError> {
    page(conn, meeting, cursor, limit, Direction::Newer).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Older,
    Newer,
}

/// One keyset page by `(sent_at, id)` from `cursor`, in `direction`.
async fn page(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    cursor: Option<Cursor>,
    limit: u32,
    direction: Direction,
) -> Result<Vec<MessageRow>, DbError> {
    use chat_messages::{id, sent_at};
    let mut query = chat_messages::table
        .filter(chat_messages::meeting_id.eq(meeting))
        .select(MessageRow::as_select())
        .limit(i64::from(limit))
        .into_boxed();
    query = match direction {
        Direction::Older => query.order((sent_at.desc(), id.desc())),
        Direction::Newer => query.order((sent_at.asc(), id.asc())),
    };
    if let Some(c) = cursor {
        query = match direction {
            Direction::Older => query.filter(
                sent_at
                    .lt(c.sent_at)
                    .or(sent_at.eq(c.sent_at).and(id.lt(c.id))),
            ),
            Direction::Newer => query.filter(
                sent_at
                    .gt(c.sent_at)
                    .or(sent_at.eq(c.sent_at).and(id.gt(c.id))),
            ),
        };
    }
    Ok(query.load(conn).await?)
}

/// The newest message's place, if the meeting has any.
pub async fn latest(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
) -> Result<Option<Cursor>, DbError> {
    let newest = before(conn, meeting, None, 1).await?;
    Ok(<[MessageRow]>::first(&newest).map(MessageRow::cursor))
}

pub async fn count(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<i64, DbError> {
    Ok(chat_messages::table
        .filter(chat_messages::meeting_id.eq(meeting))
        .count()
        .get_result(conn)
        .await?)
}

pub async fn is_deleted(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<bool, DbError> {
    let deleted: Option<Option<DateTime<Utc>>> = chat_meetings::table
        .filter(chat_meetings::meeting_id.eq(meeting))
        .select(chat_meetings::deleted_at)
        .first(conn)
        .await
        .optional()?;
    Ok(deleted.flatten().is_some())
}

/// Marks the meeting deleted (under its row lock, so no post is between
/// its check and its insert) and deletes its messages. Returns how many.
pub async fn delete_meeting(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<usize, DbError> {
    diesel::sql_query(
        "INSERT INTO chat_meetings (meeting_id, last_sent_at, deleted_at) \
         VALUES ($1, clock_timestamp(), clock_timestamp()) \
         ON CONFLICT (meeting_id) DO UPDATE \
         SET deleted_at = coalesce(chat_meetings.deleted_at, clock_timestamp())",
    )
    .bind::<SqlUuid, _>(meeting)
    .execute(conn)
    .await?;
    Ok(
        diesel::delete(chat_messages::table.filter(chat_messages::meeting_id.eq(meeting)))
            .execute(conn)
            .await?,
    )
}
