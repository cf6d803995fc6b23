//! Tagging a key mid-load, before the tagged entity's data is read.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::Cache;
use crate::{error::unavailable, keys::Tag};

/// Registers the key being loaded under tags, mid-load. Call [`Tagger::tag`]
/// *before* reading the tagged entity's data: then an invalidation of that
/// entity that follows the read is guaranteed to find this key.
#[derive(Clone)]
pub struct Tagger {
    cache: Cache,
    redis_key: Arc<str>,
    tag_ttl: Duration,
    /// False when this load will not fill (no lease): tagging is skipped.
    active: bool,
    pub(super) failed: Arc<AtomicBool>,
}

impl Tagger {
    pub(super) fn new(cache: Cache, redis_key: &str, tag_ttl: Duration, active: bool) -> Self {
        Self {
            cache,
            redis_key: redis_key.into(),
            tag_ttl,
            active,
            failed: Arc::default(),
        }
    }

    pub async fn tag(&self, tags: &[Tag]) {
        if !self.active || tags.is_empty() {
            return;
        }
        let secs = self.tag_ttl.as_secs().max(1);
        let tag_keys: Vec<String> = tags
            .iter()
            .map(|t| self.cache.redis_key(&t.path()))
            .collect();
        // Each tag's commands touch only its own key; on a cluster each tag
        // goes as its own pipeline so no pipeline spans slots.
        let groups: Vec<Vec<&String>> = if self.cache.inner.backend.is_cluster() {
            tag_keys.iter().map(|k| vec![k]).collect()
        } else {
            vec![tag_keys.iter().collect()]
        };
        for group in groups {
            let mut pipe = redis::pipe();
            for tag_key in &group {
                pipe.cmd("SADD")
                    .arg(*tag_key)
                    .arg(&*self.redis_key)
                    .ignore();
                // The index must outlive every key it lists.
                pipe.cmd("EXPIRE")
                    .arg(*tag_key)
                    .arg(secs)
                    .arg("NX")
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(*tag_key)
                    .arg(secs)
                    .arg("GT")
                    .ignore();
                pipe.cmd("SCARD").arg(*tag_key);
            }
            let result = self
                .cache
                .call("tag", async |conn| {
                    pipe.query_async::<Vec<usize>>(conn)
                        .await
                        .map_err(unavailable)
                })
                .await;
            match result {
                Ok(sizes) => {
                    for (tag_key, size) in group.iter().zip(sizes) {
                        self.cache.maybe_prune(tag_key, size);
                    }
                }
                Err(_) => {
                    // An untagged value could outlive its entity's update:
                    // this load must not fill.
                    self.failed.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}
