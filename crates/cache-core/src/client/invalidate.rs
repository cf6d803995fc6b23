//! Invalidation: delete the keys a write made stale, listed and tagged.
//!
//! The tag invariant: a key whose value embeds an entity is, until it is
//! deleted, a member of the entity's tag set or of a pending set listed in
//! the tag's registry. A tag's members are *moved* out (atomically, in the
//! tag's slot) before they are deleted, never removed after: a key refilled
//! between the delete and the cleanup is tagged again in the fresh set, so
//! the next invalidation finds it (removing the members read, after the
//! delete, lost exactly such a key: issue 9, item 1).

use super::{
    CHUNK, Cache,
    lease::lease_token,
    scripts::{DETACH_TAG, FORGET_PENDING, invoke},
};
use crate::{
    backend::slot_groups,
    error::{CacheError, unavailable},
    rules::Invalidation,
};

impl Cache {
    /// Deletes every key a write made stale: the listed keys and every key
    /// indexed under the listed tags (and with them any lease, so no fill
    /// that started before this call can land). Returns how many Redis keys
    /// existed and were deleted. An error means some keys may still be
    /// cached; the outbox retries.
    ///
    /// Applied under this process's prefix and under every previous prefix
    /// of the configuration, so during a rolling update that changes the
    /// prefix, each version's writes reach the keys the other reads.
    pub async fn invalidate(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        let mut deleted = 0;
        let mut tagged = 0;
        for prefix in self.inner.config.all_prefixes() {
            let (gone, members) = self.invalidate_under(prefix, invalidation).await?;
            deleted += gone;
            tagged += members;
        }
        self.count_invalidations(invalidation, tagged);
        Ok(deleted)
    }

    async fn invalidate_under(
        &self,
        prefix: &str,
        invalidation: &Invalidation,
    ) -> Result<(usize, usize), CacheError> {
        let explicit: Vec<String> = invalidation
            .keys
            .iter()
            .map(|k| format!("{prefix}{}", k.path()))
            .collect();
        let explicit: Vec<&str> = explicit.iter().map(String::as_str).collect();
        // Listed keys first: a tagged value refilled after its delete must
        // not be built from a listed key's old value (a user's card) that is
        // still cached — on a cluster the two deletes are not one command.
        let mut deleted = self.delete(&explicit).await?;
        let mut tagged = 0;
        for tag in &invalidation.tags {
            let tag_key = format!("{prefix}{}", tag.path());
            let (gone, members) = self.invalidate_tag(&tag_key).await?;
            deleted += gone;
            tagged += members;
        }
        for append in &invalidation.appends {
            self.append_under(prefix, append).await?;
        }
        Ok((deleted, tagged))
    }

    /// Detaches the tag's members, deletes them, then forgets the pending
    /// sets. Returns (keys deleted, members found).
    async fn invalidate_tag(&self, tag_key: &str) -> Result<(usize, usize), CacheError> {
        let registry = pending_registry(tag_key);
        let own = pending_set(&registry);
        let (sets, members): (Vec<String>, Vec<String>) = self
            .call("invalidate", async |conn| {
                invoke(
                    DETACH_TAG.key(tag_key).key(&registry).key(&own).arg("all"),
                    conn,
                )
                .await
            })
            .await?;
        #[cfg(test)]
        self.failpoint("invalidate:detached").await;
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let deleted = self.delete(&refs).await?;
        #[cfg(test)]
        self.failpoint("invalidate:deleted").await;
        if !sets.is_empty() {
            self.call("invalidate", async |conn| {
                invoke::<i64>(FORGET_PENDING.key(&registry).arg(&sets), conn).await
            })
            .await?;
        }
        Ok((deleted, members.len()))
    }

    /// DEL of keys grouped by slot; returns how many existed.
    pub(super) async fn delete(&self, keys: &[&str]) -> Result<usize, CacheError> {
        let mut deleted = 0;
        for group in slot_groups(keys, self.inner.backend.is_cluster(), CHUNK) {
            deleted += self
                .call("invalidate", async |conn| {
                    redis::cmd("DEL")
                        .arg(&group)
                        .query_async::<usize>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
        }
        Ok(deleted)
    }

    fn count_invalidations(&self, invalidation: &Invalidation, tagged: usize) {
        let metrics = &self.inner.metrics;
        for key in &invalidation.keys {
            metrics
                .invalidations
                .with_label_values(&[key.name().as_str()])
                .inc();
        }
        metrics
            .invalidations
            .with_label_values(&["tagged"])
            .inc_by(tagged as u64);
        for append in &invalidation.appends {
            metrics
                .invalidations
                .with_label_values(&[append.key.name().as_str()])
                .inc();
        }
    }
}

/// The registry of a tag's pending sets: `{<tag key>}:pending`. The braces
/// make it, and the sets named after it, hash to the tag's own slot (a tag
/// key has no braces: prefixes and tag ids cannot contain them).
pub(super) fn pending_registry(tag_key: &str) -> String {
    format!("{{{tag_key}}}:pending")
}

/// A pending set of one invalidation (or prune) of its own.
pub(super) fn pending_set(registry: &str) -> String {
    format!(
        "{registry}:{}",
        &lease_token()[super::lease::LEASE_PREFIX.len()..]
    )
}

#[cfg(test)]
mod tests {
    use crate::backend::slot;

    #[test]
    fn pending_sets_share_the_tags_slot() {
        let tag = "huddle:v1:tag:user:8c1b1f7e-6a55-4a8a-9d0c-2d1f1f8f0a11";
        let registry = super::pending_registry(tag);
        assert_eq!(slot(&registry), slot(tag));
        assert_eq!(slot(&format!("{registry}:abc")), slot(tag));
    }
}
