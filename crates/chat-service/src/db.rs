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
    sql_types::{Nullable, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::DbError;
use uuid::Uuid;

use crate::schema::{chat_meetings, chat_messages};

/// Postgres channel on which a committed post or delete wakes every
/// replica's streams of that meeting (payload: the meeting id).
pub const CHANNEL: &str = "huddle_chat";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
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

pub async fn insert(conn: &mut AsyncPgConnection, row: &MessageRow) -> Result<(), DbError> {
    diesel::insert_into(chat_messages::table)
        .values(row)
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
