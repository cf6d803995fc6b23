//! The recording service's cached reads. Their TTL follows the value
//! (SPEC §4): 30 s while a recording is PROCESSING, 600 s once settled;
//! "no recording yet" is a not-found marker that the first webhook's
//! invalidation clears.

use std::time::Duration;

use cache_core::{Cache, CacheKey, KeyName, Ttl};
use huddle_db::{Database, DbError};
use uuid::Uuid;

use crate::{
    db::{self, MAX_LISTED, RecordingRow},
    egress::Status,
};

fn processing(row: &RecordingRow) -> bool {
    row.status() == Status::Processing
}

const LATEST_TTL: Ttl<RecordingRow> = Ttl::ByValue {
    longest: Duration::from_secs(600),
    of: |row| KeyName::recording_ttl(processing(row)),
};

const LIST_TTL: Ttl<Vec<RecordingRow>> = Ttl::ByValue {
    longest: Duration::from_secs(600),
    of: |rows| KeyName::recordings_ttl(rows.iter().any(processing)),
};

/// The meeting's newest recording; `None` (cached as not-found) when none.
pub async fn latest(
    cache: &Cache,
    db: &Database,
    meeting: Uuid,
) -> Result<Option<RecordingRow>, DbError> {
    let key = CacheKey::meeting_recording(meeting);
    cache
        .get_or_load(&key, LATEST_TTL, &[], || async {
            Ok(db::newest(&mut *db.conn().await?, meeting, 1)
                .await?
                .into_iter()
                .next())
        })
        .await
}

/// The meeting's recordings, newest first.
pub async fn all(
    cache: &Cache,
    db: &Database,
    meeting: Uuid,
) -> Result<Vec<RecordingRow>, DbError> {
    let key = CacheKey::meeting_recordings(meeting);
    let rows = cache
        .get_or_load(&key, LIST_TTL, &[], || async {
            let rows = db::newest(&mut *db.conn().await?, meeting, MAX_LISTED).await?;
            Ok::<_, DbError>(Some(rows))
        })
        .await?;
    Ok(rows.unwrap_or_default())
}
