//! The chat service's cached reads: the recent window (`recentChats`) and
//! the count (`meetingChatCount`). Full history is never cached (SPEC §4).
//!
//! The window stores the posters' ids, not their names: answers compose the
//! cards from user-service, which reads them from its own `user` keys. A
//! profile update deletes those, so a window is never stale about a name,
//! and no window needs a `tag:user:…` entry (an append would otherwise have
//! to tag the window under each new poster, in another slot, before the
//! name it embeds is read).

use cache_core::{Cache, CacheKey, RECENT_CHATS_LIMIT, WindowEntry};
use chrono::{DateTime, Utc};
use huddle_db::{Database, DbError};
use huddle_serve::Outbox;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{self, MessageRow};

/// One message of a cached window, as the append script reads it: `sentAt`
/// and `id` are strings that sort as text in the window's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowMessage {
    pub id: String,
    pub meeting_id: String,
    pub user_id: String,
    pub message: String,
    /// Fixed-width RFC 3339 UTC with microseconds (`SENT_AT_FORMAT`).
    pub sent_at: String,
}

/// Postgres keeps microseconds; a fixed width makes text order time order.
const SENT_AT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl From<&MessageRow> for WindowMessage {
    fn from(row: &MessageRow) -> Self {
        Self {
            id: row.id.to_string(),
            meeting_id: row.meeting_id.to_string(),
            user_id: row.user_id.to_string(),
            message: row.message.clone(),
            sent_at: row.sent_at.format(SENT_AT_FORMAT).to_string(),
        }
    }
}

impl WindowMessage {
    /// What the post's outbox entry appends to a cached window.
    pub fn entry(&self) -> Result<WindowEntry, DbError> {
        Ok(WindowEntry {
            sent_at: self.sent_at.clone(),
            id: self.id.clone(),
            json: serde_json::to_string(self)
                .map_err(|e| DbError::Unavailable(format!("cannot encode message: {e}")))?,
        })
    }

    /// Back to a row; `None` for a value no constructor above wrote.
    pub fn to_row(&self) -> Option<MessageRow> {
        Some(MessageRow {
            id: Uuid::parse_str(&self.id).ok()?,
            meeting_id: Uuid::parse_str(&self.meeting_id).ok()?,
            user_id: Uuid::parse_str(&self.user_id).ok()?,
            message: self.message.clone(),
            sent_at: DateTime::parse_from_rfc3339(&self.sent_at)
                .ok()?
                .with_timezone(&Utc),
        })
    }
}

/// The last 50 messages, oldest first. Its fill shows only settled
/// messages (`db::settled_through`), as history does, and one only held
/// for holds this replica's reads first, as the stream does before sending
/// it. Messages committed after the fill's start are left to the append
/// (it finds the fill's lease or its value), never lost.
pub async fn recent(
    cache: &Cache,
    db: &Database,
    outbox: &Outbox,
    meeting: Uuid,
) -> Result<Vec<MessageRow>, DbError> {
    let key = CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT);
    let window: Option<Vec<WindowMessage>> = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            let Some(upto) = db::settled_through(db, meeting, None).await? else {
                return Ok::<_, DbError>(Some(Vec::new()));
            };
            let (rows, held) = db::settled_before(
                &mut *db.conn().await?,
                meeting,
                None,
                upto,
                RECENT_CHATS_LIMIT,
            )
            .await?;
            if held {
                outbox.hold_for_pending();
            }
            Ok(Some(rows.iter().rev().map(WindowMessage::from).collect()))
        })
        .await?;
    Ok(window
        .unwrap_or_default()
        .iter()
        .filter_map(WindowMessage::to_row)
        .collect())
}

/// The number of messages, filled like the window (settled ones only).
pub async fn count(
    cache: &Cache,
    db: &Database,
    outbox: &Outbox,
    meeting: Uuid,
) -> Result<u64, DbError> {
    let key = CacheKey::meeting_chat_count(meeting);
    let count: Option<i64> = cache
        .get_or_load(&key, key.ttl(), &[], || async {
            let Some(upto) = db::settled_through(db, meeting, None).await? else {
                return Ok::<_, DbError>(Some(0));
            };
            let (n, held) = db::count_through(&mut *db.conn().await?, meeting, upto).await?;
            if held {
                outbox.hold_for_pending();
            }
            Ok(Some(n))
        })
        .await?;
    Ok(count.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn window_messages_round_trip_and_sort_as_text() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let row = |sent_at| MessageRow {
            id: Uuid::new_v4(),
            meeting_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            message: "hi".to_owned(),
            sent_at,
        };
        let whole = row(at("2026-01-01T10:00:05Z"));
        let fraction = row(at("2026-01-01T10:00:04.5Z"));
        assert_eq!(WindowMessage::from(&whole).to_row().unwrap(), whole);
        assert!(WindowMessage::from(&fraction).sent_at < WindowMessage::from(&whole).sent_at);
        assert_eq!(
            WindowMessage::from(&whole).sent_at,
            "2026-01-01T10:00:05.000000Z"
        );
    }
}
