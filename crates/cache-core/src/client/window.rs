//! Appending to a cached window (`recentChats`) instead of deleting it: one
//! script on one key, so concurrent posts on any replica can neither lose
//! an entry nor reorder the window, and a replay of the same append (the
//! outbox applies at least once) changes nothing.
//!
//! The lease lives in the window's own key (see `lease.rs`), so the window
//! and its lease are one key in one slot: the script runs unchanged on a
//! cluster.

use super::{
    Cache,
    lease::{LEASE_PREFIX, NOT_FOUND_MARKER},
    scripts::{APPEND_TO_WINDOW, invoke},
};
use crate::{error::CacheError, window::WindowAppend};

/// What an append did to the cached window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The entry is in the window now.
    Added,
    /// No window cached, or the entry was there already.
    Nothing,
    /// A lease (a fill in progress) or a marker was there: deleted.
    Deleted,
}

impl Cache {
    /// Applies `append` under this process's prefix only (the outbox applies
    /// whole invalidations through [`Cache::invalidate`], which covers the
    /// previous prefixes too).
    pub async fn append_to_window(&self, append: &WindowAppend) -> Result<Appended, CacheError> {
        let required = self.required_replicas().await?;
        self.append_under(&self.key_prefix(), append, required)
            .await
    }

    /// The append, then `WAIT` for `required` replicas on its connection.
    pub(super) async fn append_under(
        &self,
        prefix: &str,
        append: &WindowAppend,
        required: u32,
    ) -> Result<Appended, CacheError> {
        let key = format!("{prefix}{}", append.key.path());
        let entry = &append.entry;
        let (outcome, acked): (i64, u32) = self
            .call_within("invalidate", self.wait_bound(required), async |conn| {
                let outcome = invoke(
                    APPEND_TO_WINDOW
                        .key(&key)
                        .arg(&entry.json)
                        .arg(&entry.sent_at)
                        .arg(&entry.id)
                        .arg(append.limit)
                        .arg(LEASE_PREFIX)
                        .arg(NOT_FOUND_MARKER),
                    &mut *conn,
                )
                .await?;
                Ok((outcome, self.wait_on(conn, required).await?))
            })
            .await?;
        self.check_replicated(acked, required)?;
        Ok(match outcome {
            1 => Appended::Added,
            -1 => Appended::Deleted,
            _ => Appended::Nothing,
        })
    }
}
