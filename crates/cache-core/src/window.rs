//! What a chat post appends to a cached window (`recentChats`): written by
//! the rules (`Invalidation::chat_message`), recorded in the outbox, applied
//! by `Cache::append_to_window`.

use serde::{Deserialize, Serialize};

use crate::keys::CacheKey;

/// One entry of a cached window (`recentChats`): its JSON as stored in the
/// window's array, and its place in the window's order, `(sent_at, id)`.
/// `sent_at` must sort as text in time order (fixed-width RFC 3339 UTC); the
/// stored JSON object carries the same two values as `sentAt` and `id`,
/// which the append script compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowEntry {
    pub sent_at: String,
    pub id: String,
    pub json: String,
}

/// An entry to append to one cached window, trimmed to `limit`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowAppend {
    pub key: CacheKey,
    pub limit: u32,
    pub entry: WindowEntry,
}
