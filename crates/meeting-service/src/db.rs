//! Queries on `huddle_meeting`. Plain async functions over a connection, so
//! the caller owns the transaction. Status transitions and leave times use
//! the database clock (`now()`), so every timestamp of a meeting comes from
//! one clock and the table's CHECKs hold across hosts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    dsl::{count_star, now},
    expression::AsExpression,
    pg::{Pg, PgValue},
    prelude::*,
    serialize::{self, Output, ToSql},
    sql_types::Text,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::DbError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::{meetings, participants};

/// Unique constraint on `meetings.invite_code` (a fresh code collided).
pub const INVITE_CODE_CONSTRAINT: &str = "meetings_invite_code_key";
/// One active participant row per user and meeting.
pub const ONE_ACTIVE_CONSTRAINT: &str = "participants_one_active_idx";

/// SCHEDULED → LIVE → ENDED, never backwards.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Scheduled,
    Live,
    Ended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Live => "LIVE",
            Self::Ended => "ENDED",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "SCHEDULED" => Some(Self::Scheduled),
            "LIVE" => Some(Self::Live),
            "ENDED" => Some(Self::Ended),
            _ => None,
        }
    }

    /// The one step forward from here, if any.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Scheduled => Some(Self::Live),
            Self::Live => Some(Self::Ended),
            Self::Ended => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql<Text, Pg> for Status {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for Status {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let raw = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Self::parse(&raw).ok_or_else(|| format!("unknown meeting status {raw:?}").into())
    }
}

/// A meeting row; also part of the cached `meeting` value.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize)]
#[diesel(table_name = meetings, check_for_backend(diesel::pg::Pg))]
pub struct MeetingRow {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub host_id: Uuid,
    pub invite_code: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new meeting is inserted SCHEDULED; an instant (LIVE) one is then started
/// in the same transaction, so `started_at` comes from the database clock.
#[derive(Debug, Insertable)]
#[diesel(table_name = meetings)]
pub struct NewMeeting<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub host_id: Uuid,
    pub invite_code: &'a str,
    pub scheduled_at: DateTime<Utc>,
}

/// Field edits of a meeting; `None` leaves a column as it is, `Some(None)` on
/// `description` clears it. Status moves through [`set_status`] instead.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = meetings)]
pub struct MeetingChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub invite_code: Option<String>,
}

impl MeetingChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.scheduled_at.is_none()
            && self.invite_code.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize)]
#[diesel(table_name = participants, check_for_backend(diesel::pg::Pg))]
pub struct ParticipantRow {
    pub id: Uuid,
    pub meeting_id: Uuid,
    pub user_id: Uuid,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostStats {
    pub total: i64,
    pub live: i64,
    pub scheduled: i64,
    pub ended: i64,
}

pub async fn insert_meeting(
    conn: &mut AsyncPgConnection,
    new: &NewMeeting<'_>,
    live: bool,
) -> Result<MeetingRow, DbError> {
    let row = diesel::insert_into(meetings::table)
        .values(new)
        .returning(MeetingRow::as_returning())
        .get_result(conn)
        .await?;
    if live {
        return set_status(conn, new.id, Status::Live).await;
    }
    Ok(row)
}

/// Inserts unless a meeting with that id exists (idempotent seed).
pub async fn insert_meeting_if_absent(
    conn: &mut AsyncPgConnection,
    new: &NewMeeting<'_>,
    live: bool,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(meetings::table)
        .values(new)
        .on_conflict(meetings::id)
        .do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 && live {
        set_status(conn, new.id, Status::Live).await?;
    }
    Ok(inserted == 1)
}

pub async fn find_meeting(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<MeetingRow>, DbError> {
    Ok(meetings::table
        .find(id)
        .select(MeetingRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The row, locked until the transaction ends: writes to one meeting
/// (update, start, end, delete, join, leave) are serialized by this lock.
pub async fn lock_meeting(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<MeetingRow>, DbError> {
    Ok(meetings::table
        .find(id)
        .select(MeetingRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// `code` must already be validated; matched exactly (case-sensitive).
pub async fn find_by_invite_code(
    conn: &mut AsyncPgConnection,
    code: &str,
) -> Result<Option<MeetingRow>, DbError> {
    Ok(meetings::table
        .filter(meetings::invite_code.eq(code))
        .select(MeetingRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn update_fields(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &MeetingChanges,
) -> Result<MeetingRow, DbError> {
    Ok(diesel::update(meetings::table.find(id))
        .set((changes, meetings::updated_at.eq(now)))
        .returning(MeetingRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Moves the meeting to `status`, stamping `started_at` / `ended_at` with the
/// database clock. The caller checked that this is a step forward.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: Status,
) -> Result<MeetingRow, DbError> {
    let target = meetings::table.find(id);
    let query = match status {
        Status::Scheduled => {
            diesel::update(target)
                .set((meetings::status.eq(status), meetings::updated_at.eq(now)))
                .returning(MeetingRow::as_returning())
                .get_result(conn)
                .await
        }
        Status::Live => {
            diesel::update(target)
                .set((
                    meetings::status.eq(status),
                    meetings::started_at.eq(now),
                    meetings::updated_at.eq(now),
                ))
                .returning(MeetingRow::as_returning())
                .get_result(conn)
                .await
        }
        Status::Ended => {
            diesel::update(target)
                .set((
                    meetings::status.eq(status),
                    meetings::ended_at.eq(now),
                    meetings::updated_at.eq(now),
                ))
                .returning(MeetingRow::as_returning())
                .get_result(conn)
                .await
        }
    };
    Ok(query?)
}

/// Deletes the meeting and (by foreign key cascade) its participants.
pub async fn delete_meeting(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, DbError> {
    let deleted = diesel::delete(meetings::table.find(id))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Every user with a participant row in the meeting (active or not): the
/// users whose `userParticipations` show it.
pub async fn participant_user_ids(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
) -> Result<Vec<Uuid>, DbError> {
    Ok(participants::table
        .filter(participants::meeting_id.eq(meeting))
        .select(participants::user_id)
        .distinct()
        .load(conn)
        .await?)
}

pub async fn find_active_participant(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    user: Uuid,
) -> Result<Option<ParticipantRow>, DbError> {
    Ok(participants::table
        .filter(participants::meeting_id.eq(meeting))
        .filter(participants::user_id.eq(user))
        .filter(participants::left_at.is_null())
        .select(ParticipantRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The user's most recent participant row in the meeting, active or not.
pub async fn last_participation(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    user: Uuid,
) -> Result<Option<ParticipantRow>, DbError> {
    Ok(participants::table
        .filter(participants::meeting_id.eq(meeting))
        .filter(participants::user_id.eq(user))
        .order((participants::joined_at.desc(), participants::id.desc()))
        .select(ParticipantRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn insert_participant(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    meeting: Uuid,
    user: Uuid,
) -> Result<ParticipantRow, DbError> {
    Ok(diesel::insert_into(participants::table)
        .values((
            participants::id.eq(id),
            participants::meeting_id.eq(meeting),
            participants::user_id.eq(user),
        ))
        .returning(ParticipantRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Past this many rows for one user in one meeting, a rejoin reopens the
/// user's latest row instead of adding one, so leave/join in a loop cannot
/// grow the table — and every cached list of the meeting — without bound.
pub const MAX_PARTICIPATIONS_PER_USER: i64 = 20;

/// A new participation of `user` (who has no active row): a new row, or
/// the latest one reopened once the user has `MAX_PARTICIPATIONS_PER_USER`.
pub async fn join(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    user: Uuid,
) -> Result<ParticipantRow, DbError> {
    let rows: i64 = participants::table
        .filter(participants::meeting_id.eq(meeting))
        .filter(participants::user_id.eq(user))
        .count()
        .get_result(conn)
        .await?;
    if rows < MAX_PARTICIPATIONS_PER_USER {
        return insert_participant(conn, Uuid::new_v4(), meeting, user).await;
    }
    let Some(latest) = last_participation(conn, meeting, user).await? else {
        return insert_participant(conn, Uuid::new_v4(), meeting, user).await;
    };
    Ok(diesel::update(participants::table.find(latest.id))
        .set((
            participants::joined_at.eq(now),
            participants::left_at.eq(None::<DateTime<Utc>>),
        ))
        .returning(ParticipantRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Marks the user's active row as left; `None` when they had none.
pub async fn leave(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    user: Uuid,
) -> Result<Option<ParticipantRow>, DbError> {
    Ok(diesel::update(
        participants::table
            .filter(participants::meeting_id.eq(meeting))
            .filter(participants::user_id.eq(user))
            .filter(participants::left_at.is_null()),
    )
    .set(participants::left_at.eq(now))
    .returning(ParticipantRow::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Marks every active participant as left; returns who was.
pub async fn leave_all(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<Vec<Uuid>, DbError> {
    Ok(diesel::update(
        participants::table
            .filter(participants::meeting_id.eq(meeting))
            .filter(participants::left_at.is_null()),
    )
    .set(participants::left_at.eq(now))
    .returning(participants::user_id)
    .load(conn)
    .await?)
}

/// Up to `limit` participant rows of the meeting, oldest join first,
/// starting after participant `after` (keyset on `(joined_at, id)`).
/// `Ok(None)` when `after` is not a participant row of this meeting.
pub async fn participants_page(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Option<Vec<ParticipantRow>>, DbError> {
    let mut query = participants::table
        .filter(participants::meeting_id.eq(meeting))
        .into_boxed();
    if let Some(after) = after {
        let anchor: Option<(DateTime<Utc>, Uuid)> = participants::table
            .filter(participants::meeting_id.eq(meeting))
            .filter(participants::id.eq(after))
            .select((participants::joined_at, participants::id))
            .first(conn)
            .await
            .optional()?;
        let Some((joined_at, id)) = anchor else {
            return Ok(None);
        };
        query = query.filter(
            participants::joined_at
                .gt(joined_at)
                .or(participants::joined_at
                    .eq(joined_at)
                    .and(participants::id.gt(id))),
        );
    }
    Ok(Some(
        query
            .order((participants::joined_at.asc(), participants::id.asc()))
            .limit(limit)
            .select(ParticipantRow::as_select())
            .load(conn)
            .await?,
    ))
}

pub async fn count_active(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<i64, DbError> {
    Ok(participants::table
        .filter(participants::meeting_id.eq(meeting))
        .filter(participants::left_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// Active participants per meeting, for the given meetings (absent: zero).
pub async fn count_active_many(
    conn: &mut AsyncPgConnection,
    meetings: &[Uuid],
) -> Result<HashMap<Uuid, i64>, DbError> {
    if meetings.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, i64)> = participants::table
        .filter(participants::meeting_id.eq_any(meetings))
        .filter(participants::left_at.is_null())
        .group_by(participants::meeting_id)
        .select((participants::meeting_id, count_star()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// LIVE meetings, newest start first.
pub async fn live_meetings(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<MeetingRow>, DbError> {
    Ok(meetings::table
        .filter(meetings::status.eq(Status::Live))
        .order((meetings::started_at.desc(), meetings::id.asc()))
        .limit(limit)
        .select(MeetingRow::as_select())
        .load(conn)
        .await?)
}

/// SCHEDULED meetings, soonest first.
pub async fn scheduled_meetings(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<MeetingRow>, DbError> {
    Ok(meetings::table
        .filter(meetings::status.eq(Status::Scheduled))
        .order((meetings::scheduled_at.asc(), meetings::id.asc()))
        .limit(limit)
        .select(MeetingRow::as_select())
        .load(conn)
        .await?)
}

/// Meetings hosted by `host`, newest first.
pub async fn hosted_meetings(
    conn: &mut AsyncPgConnection,
    host: Uuid,
    limit: i64,
) -> Result<Vec<MeetingRow>, DbError> {
    Ok(meetings::table
        .filter(meetings::host_id.eq(host))
        .order((meetings::created_at.desc(), meetings::id.asc()))
        .limit(limit)
        .select(MeetingRow::as_select())
        .load(conn)
        .await?)
}

/// The user's participant rows with their meetings, newest join first.
pub async fn participations(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> Result<Vec<(ParticipantRow, MeetingRow)>, DbError> {
    Ok(participants::table
        .inner_join(meetings::table)
        .filter(participants::user_id.eq(user))
        .order((participants::joined_at.desc(), participants::id.asc()))
        .limit(limit)
        .select((ParticipantRow::as_select(), MeetingRow::as_select()))
        .load(conn)
        .await?)
}

/// `{total, live, scheduled, ended}` of a host, in one query.
pub async fn host_stats(conn: &mut AsyncPgConnection, host: Uuid) -> Result<HostStats, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        total: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        live: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        scheduled: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ended: i64,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS total, \
                count(*) FILTER (WHERE status = 'LIVE') AS live, \
                count(*) FILTER (WHERE status = 'SCHEDULED') AS scheduled, \
                count(*) FILTER (WHERE status = 'ENDED') AS ended \
         FROM meetings WHERE host_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(host)
    .get_result(conn)
    .await?;
    Ok(HostStats {
        total: row.total,
        live: row.live,
        scheduled: row.scheduled,
        ended: row.ended,
    })
}
