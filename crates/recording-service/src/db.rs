//! Queries on `huddle_recording`. Plain async functions over a connection,
//! so the caller owns the transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::DbError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    egress::{State, Status},
    schema::{deleted_meetings, recordings},
};

/// A meeting's recordings in one answer (`ListRecordings`), newest first.
pub const MAX_LISTED: i64 = 100;

/// A recording row; also the cached shape of `meetingRecording` and of each
/// item of `meetingRecordings`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize)]
#[diesel(table_name = recordings, check_for_backend(diesel::pg::Pg))]
pub struct RecordingRow {
    pub id: Uuid,
    pub meeting_id: Uuid,
    pub egress_id: String,
    pub status: String,
    pub file_url: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RecordingRow {
    pub fn status(&self) -> Status {
        // The column's CHECK allows nothing else.
        Status::from_db(&self.status).unwrap_or(Status::Processing)
    }

    pub fn state(&self) -> State {
        State {
            status: self.status(),
            file_url: self.file_url.clone(),
            duration_seconds: self.duration_seconds,
            file_size_bytes: self.file_size_bytes,
            error: self.error.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
        }
    }
}

diesel::define_sql_function!(fn pg_advisory_xact_lock(key: diesel::sql_types::BigInt));
diesel::define_sql_function!(fn hashtextextended(text: diesel::sql_types::Text, seed: diesel::sql_types::BigInt) -> diesel::sql_types::BigInt);

/// Serializes every write of one meeting's recordings (webhooks and the
/// cascade's delete) until the transaction ends, so a webhook cannot insert
/// beside a delete that does not see it.
pub async fn lock_meeting(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<(), DbError> {
    diesel::select(pg_advisory_xact_lock(hashtextextended(
        meeting.to_string(),
        0x7265_636f_7264_i64,
    )))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn is_deleted(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<bool, DbError> {
    Ok(
        diesel::select(diesel::dsl::exists(deleted_meetings::table.find(meeting)))
            .get_result(conn)
            .await?,
    )
}

/// The egress's row, unlocked.
pub async fn find(
    conn: &mut AsyncPgConnection,
    egress_id: &str,
) -> Result<Option<RecordingRow>, DbError> {
    Ok(recordings::table
        .filter(recordings::egress_id.eq(egress_id))
        .select(RecordingRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The egress's row, locked for the rest of the transaction.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    egress_id: &str,
) -> Result<Option<RecordingRow>, DbError> {
    Ok(recordings::table
        .filter(recordings::egress_id.eq(egress_id))
        .select(RecordingRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    egress_id: &str,
    state: &State,
) -> Result<(), DbError> {
    diesel::insert_into(recordings::table)
        .values((
            recordings::id.eq(Uuid::new_v4()),
            recordings::meeting_id.eq(meeting),
            recordings::egress_id.eq(egress_id),
            columns(state),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn update(conn: &mut AsyncPgConnection, id: Uuid, state: &State) -> Result<(), DbError> {
    diesel::update(recordings::table.find(id))
        .set((columns(state), recordings::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(())
}

type Columns<'a> = (
    diesel::dsl::Eq<recordings::status, &'static str>,
    diesel::dsl::Eq<recordings::file_url, Option<&'a str>>,
    diesel::dsl::Eq<recordings::duration_seconds, Option<i64>>,
    diesel::dsl::Eq<recordings::file_size_bytes, Option<i64>>,
    diesel::dsl::Eq<recordings::error, Option<&'a str>>,
    diesel::dsl::Eq<recordings::started_at, DateTime<Utc>>,
    diesel::dsl::Eq<recordings::ended_at, Option<DateTime<Utc>>>,
);

fn columns(state: &State) -> Columns<'_> {
    (
        recordings::status.eq(state.status.as_str()),
        recordings::file_url.eq(state.file_url.as_deref()),
        recordings::duration_seconds.eq(state.duration_seconds),
        recordings::file_size_bytes.eq(state.file_size_bytes),
        recordings::error.eq(state.error.as_deref()),
        recordings::started_at.eq(state.started_at),
        recordings::ended_at.eq(state.ended_at),
    )
}

/// A meeting's recordings, newest first (by LiveKit's start time).
pub async fn newest(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    limit: i64,
) -> Result<Vec<RecordingRow>, DbError> {
    Ok(recordings::table
        .filter(recordings::meeting_id.eq(meeting))
        .order((recordings::started_at.desc(), recordings::id.desc()))
        .limit(limit)
        .select(RecordingRow::as_select())
        .load(conn)
        .await?)
}

/// Deletes the meeting's recordings and remembers that it is gone; returns
/// how many rows went. Run it inside a transaction, after [`lock_meeting`].
pub async fn delete_meeting(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<usize, DbError> {
    diesel::insert_into(deleted_meetings::table)
        .values(deleted_meetings::meeting_id.eq(meeting))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(
        diesel::delete(recordings::table.filter(recordings::meeting_id.eq(meeting)))
            .execute(conn)
            .await?,
    )
}

/// PROCESSING recordings created before `before`, oldest first: what the
/// reconciliation pass asks LiveKit about.
pub async fn processing_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RecordingRow>, DbError> {
    Ok(recordings::table
        .filter(recordings::status.eq(Status::Processing.as_str()))
        .filter(recordings::created_at.lt(before))
        .order(recordings::created_at.asc())
        .limit(limit)
        .select(RecordingRow::as_select())
        .load(conn)
        .await?)
}
