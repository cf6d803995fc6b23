//! Invalidation: delete the keys a write made stale, listed and tagged.
//!
//! The tag invariant: a key whose value embeds an entity is, until it is
//! deleted, a member of the entity's tag set or of a pending set listed in
//! the tag's registry. A tag's members are *moved* out (atomically, in the
//! tag's slot) before they are deleted, never removed after: a key refilled
//! between the delete and the cleanup is tagged again in the fresh set, so
//! the next invalidation finds it (removing the members read, after the
//! delete, lost exactly such a key: issue 9, item 1).
//!
//! Failover: every DEL (and window append) is followed, on the same
//! connection, by `WAIT <replicas> <timeout>`; fewer acknowledgements than
//! required fail the apply like a refused one, so the outbox keeps the row
//! and holds reads. The tag bookkeeping (detach, forget) is not waited for:
//! losing it leaves extra members, which only widens a later invalidation.

use std::time::Duration;

use super::{
    CHUNK, Cache,
    lease::{lease_token, millis},
    scripts::{DETACH_TAG, FORGET_PENDING, invoke},
};
use crate::{
    backend::{Conn, slot_groups},
    config::WaitReplicas,
    epoch::cluster_min_replicas,
    error::{CacheError, unavailable},
    rules::Invalidation,
};

/// Generation moves an invalidation follows before it gives up (and the
/// outbox retries it later).
const MAX_MOVES: usize = 3;

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
    ///
    /// Under the current key generation and the previous one (processes that
    /// have not seen a primary change yet still read it); if the generation
    /// moves meanwhile, the invalidation runs again under the new one.
    pub async fn invalidate(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        for _ in 0..MAX_MOVES {
            let version = self.inner.epoch.version();
            let result = self.invalidate_once(invalidation).await;
            // A move meanwhile (a new primary, met on a new connection):
            // again under the new generation and with its replica count.
            if self.inner.epoch.version() == version {
                return result;
            }
        }
        Err(CacheError::Unavailable(
            "the redis primary kept changing during an invalidation".into(),
        ))
    }

    async fn invalidate_once(&self, invalidation: &Invalidation) -> Result<usize, CacheError> {
        let required = self.required_replicas().await?;
        let mut deleted = 0;
        let mut tagged = 0;
        for prefix in self.invalidation_prefixes() {
            let (gone, members) = self
                .invalidate_under(&prefix, invalidation, required)
                .await?;
            deleted += gone;
            tagged += members;
        }
        self.count_invalidations(invalidation, tagged);
        Ok(deleted)
    }

    fn invalidation_prefixes(&self) -> Vec<String> {
        let epoch = &self.inner.epoch;
        let mut prefixes = Vec::new();
        for configured in self.inner.config.all_prefixes() {
            prefixes.push(epoch.current(configured));
            prefixes.extend(epoch.previous(configured));
        }
        prefixes
    }

    /// How many replicas this invalidation's writes must reach. Re-reads
    /// the primary's identity at most once a second on the way (a long-lived
    /// connection would otherwise never notice a switched primary).
    pub(super) async fn required_replicas(&self) -> Result<u32, CacheError> {
        let wait = self.inner.config.wait_replicas;
        if wait == WaitReplicas::Off && self.inner.backend.is_cluster() {
            return Ok(0);
        }
        let connected = match self.inner.epoch.fresh_replicas() {
            Some(n) => n,
            None => self.refresh_topology().await?,
        };
        Ok(match wait {
            WaitReplicas::Off => 0,
            WaitReplicas::Count(n) => n,
            WaitReplicas::Auto => connected,
        })
    }

    async fn refresh_topology(&self) -> Result<u32, CacheError> {
        let epoch = self.inner.epoch.clone();
        if self.inner.backend.is_cluster() {
            let nodes: String = self
                .call("invalidate", async |conn| {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query_async(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            let replicas = cluster_min_replicas(&nodes);
            epoch.set_replicas(replicas);
            return Ok(replicas);
        }
        self.call("invalidate", async |conn| {
            epoch.observe(conn).await.map_err(unavailable)
        })
        .await
    }

    /// The bound of a call that ends in a `WAIT`.
    pub(super) fn wait_bound(&self, required: u32) -> Duration {
        let config = &self.inner.config;
        if required == 0 {
            config.op_timeout
        } else {
            config.op_timeout + config.wait_timeout
        }
    }

    /// `WAIT` on `conn`, for writes already sent on it.
    pub(super) async fn wait_on(&self, conn: &mut Conn, required: u32) -> Result<u32, CacheError> {
        if required == 0 {
            return Ok(0);
        }
        redis::cmd("WAIT")
            .arg(required)
            .arg(millis(self.inner.config.wait_timeout))
            .query_async(conn)
            .await
            .map_err(unavailable)
    }

    /// A shortfall fails the apply, but the primary answered: it is not a
    /// Redis failure, so it does not feed the breaker.
    pub(super) fn check_replicated(&self, acked: u32, required: u32) -> Result<(), CacheError> {
        if acked >= required {
            return Ok(());
        }
        self.inner
            .metrics
            .redis_errors
            .with_label_values(&["wait"])
            .inc();
        Err(CacheError::NotReplicated { acked, required })
    }

    async fn invalidate_under(
        &self,
        prefix: &str,
        invalidation: &Invalidation,
        required: u32,
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
        let mut deleted = self.delete(&explicit, required).await?;
        let mut tagged = 0;
        for tag in &invalidation.tags {
            let tag_key = format!("{prefix}{}", tag.path());
            let (gone, members) = self.invalidate_tag(&tag_key, required).await?;
            deleted += gone;
            tagged += members;
        }
        for append in &invalidation.appends {
            self.append_under(prefix, append, required).await?;
        }
        Ok((deleted, tagged))
    }

    /// Detaches the tag's members, deletes them, then forgets the pending
    /// sets. Returns (keys deleted, members found).
    async fn invalidate_tag(
        &self,
        tag_key: &str,
        required: u32,
    ) -> Result<(usize, usize), CacheError> {
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
        let deleted = self.delete(&refs, required).await?;
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

    /// DEL of keys grouped by slot, each followed by `WAIT` in the same
    /// pipeline (on a cluster the pipeline goes to the group's master, so
    /// the WAIT asks exactly the master the DEL touched); returns how many
    /// keys existed.
    pub(super) async fn delete(&self, keys: &[&str], required: u32) -> Result<usize, CacheError> {
        let mut deleted = 0;
        let wait_ms = millis(self.inner.config.wait_timeout);
        for group in slot_groups(keys, self.inner.backend.is_cluster(), CHUNK) {
            let (gone, acked) = self
                .call_within("invalidate", self.wait_bound(required), async |conn| {
                    if required == 0 {
                        let gone = redis::cmd("DEL").arg(&group).query_async(conn).await;
                        return gone.map(|n| (n, 0)).map_err(unavailable);
                    }
                    redis::pipe()
                        .cmd("DEL")
                        .arg(&group)
                        .cmd("WAIT")
                        .arg(required)
                        .arg(wait_ms)
                        .query_async::<(usize, u32)>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await?;
            self.check_replicated(acked, required)?;
            deleted += gone;
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
