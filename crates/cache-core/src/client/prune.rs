//! Bounding tag sets: members whose keys expired stay listed until the
//! entity's next write; a tag of a rarely written entity would grow without
//! bound (and with it the invalidation's SMEMBERS and DELs). A prune drops
//! them without ever dropping a member that may still be filled:
//! it detaches the members into a registered pending set (as an
//! invalidation does, so a concurrent invalidation still finds them, and a
//! refill tags the fresh set), checks which keys still exist, and puts those
//! back. A key found gone cannot be filled later without a new lease, whose
//! holder tags the key again in the fresh set.

use rand::Rng;

use super::{
    Cache,
    invalidate::{pending_registry, pending_set},
    scripts::{DETACH_TAG, REATTACH, invoke},
};
use crate::{
    backend::slot_groups,
    error::{CacheError, unavailable},
    keys::Tag,
};

/// A tag with at least this many members is pruned now and then.
pub(super) const PRUNE_AT: usize = 64;
/// One tagging in this many of a big tag starts a prune.
const PRUNE_ONE_IN: u32 = 16;

impl Cache {
    /// Removes the members of `tag` whose keys are gone. Returns how many.
    pub async fn prune_tag(&self, tag: &Tag) -> Result<usize, CacheError> {
        self.prune_tag_key(&self.redis_key(&tag.path())).await
    }

    pub(super) async fn prune_tag_key(&self, tag_key: &str) -> Result<usize, CacheError> {
        let registry = pending_registry(tag_key);
        let own = pending_set(&registry);
        let (_, members): (Vec<String>, Vec<String>) = self
            .call("prune", async |conn| {
                invoke(
                    DETACH_TAG.key(tag_key).key(&registry).key(&own).arg("own"),
                    conn,
                )
                .await
            })
            .await?;
        let live = self.existing(&members).await?;
        #[cfg(test)]
        self.failpoint("prune:checked").await;
        self.call("prune", async |conn| {
            invoke::<i64>(
                REATTACH.key(tag_key).key(&registry).key(&own).arg(&live),
                conn,
            )
            .await
        })
        .await?;
        Ok(members.len() - live.len())
    }

    /// The keys of `keys` that exist (a value, a marker or a lease).
    async fn existing(&self, keys: &[String]) -> Result<Vec<String>, CacheError> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut live = Vec::new();
        for group in slot_groups(&refs, self.inner.backend.is_cluster(), super::CHUNK) {
            let mut pipe = redis::pipe();
            for key in &group {
                pipe.cmd("EXISTS").arg(*key);
            }
            let found: Vec<bool> = self
                .call("prune", async |conn| {
                    pipe.query_async(conn).await.map_err(unavailable)
                })
                .await?;
            live.extend(
                group
                    .iter()
                    .zip(found)
                    .filter(|(_, exists)| *exists)
                    .map(|(k, _)| (*k).to_owned()),
            );
        }
        Ok(live)
    }

    /// Called after tagging: now and then, prune a big tag in the
    /// background (never on the request's path).
    pub(super) fn maybe_prune(&self, tag_key: &str, members: usize) {
        if members < PRUNE_AT || rand::rng().random_range(0..PRUNE_ONE_IN) != 0 {
            return;
        }
        let (cache, tag_key) = (self.clone(), tag_key.to_owned());
        tokio::spawn(async move {
            if let Err(e) = cache.prune_tag_key(&tag_key).await {
                tracing::debug!(tag = %tag_key, error = %e, "tag prune failed; the next one retries");
            }
        });
    }
}
