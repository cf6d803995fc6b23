//! Invalidation: delete the keys a write made stale, listed and tagged.

use super::{CHUNK, Cache};
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
    pub async fn invalidate(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        let explicit: Vec<String> = invalidation
            .keys
            .iter()
            .map(|k| self.redis_key(k.path()))
            .collect();
        let mut tagged: Vec<(String, Vec<String>)> = Vec::with_capacity(invalidation.tags.len());
        for tag in &invalidation.tags {
            let tag_key = self.redis_key(&tag.path());
            let members: Vec<String> = self
                .call("invalidate", async |conn| {
                    redis::cmd("SMEMBERS")
                        .arg(&tag_key)
                        .query_async(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            tagged.push((tag_key, members));
        }
        let all: Vec<&str> = explicit
            .iter()
            .map(String::as_str)
            .chain(
                tagged
                    .iter()
                    .flat_map(|(_, m)| m.iter().map(String::as_str)),
            )
            .collect();
        let deleted = self.delete(&all).await?;
        // Remove only the members we deleted: a key registered after our
        // SMEMBERS stays indexed for the next invalidation.
        for (tag_key, members) in &tagged {
            for chunk in members.chunks(CHUNK) {
                self.call("invalidate", async |conn| {
                    redis::cmd("SREM")
                        .arg(tag_key)
                        .arg(chunk)
                        .query_async::<()>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            }
        }
        self.count_invalidations(invalidation, &tagged);
        Ok(deleted)
    }

    /// DEL of keys grouped by slot; returns how many existed.
    async fn delete(&self, keys: &[&str]) -> Result<usize, CacheError> {
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

    fn count_invalidations(&self, invalidation: &Invalidation, tagged: &[(String, Vec<String>)]) {
        let metrics = &self.inner.metrics;
        for key in &invalidation.keys {
            metrics
                .invalidations
                .with_label_values(&[key.name().as_str()])
                .inc();
        }
        let tagged_count: usize = tagged.iter().map(|(_, m)| m.len()).sum();
        metrics
            .invalidations
            .with_label_values(&["tagged"])
            .inc_by(tagged_count as u64);
    }
}
