//! Test-only pauses at named points of the client, so a test can order
//! another caller's steps between two of ours. Compiled into test builds of
//! this crate only.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::Barrier;

use super::Cache;

/// A paused point: the client waits on `reached` (the test learns it got
/// there), then on `resume` (the test lets it go on).
pub(crate) struct Pause {
    pub(crate) reached: Barrier,
    pub(crate) resume: Barrier,
}

#[derive(Default)]
pub(crate) struct Failpoints(std::sync::Mutex<HashMap<&'static str, Arc<Pause>>>);

impl Cache {
    /// Arms `name` once: the next caller to reach it pauses there.
    pub(crate) fn arm(&self, name: &'static str) -> Arc<Pause> {
        let pause = Arc::new(Pause {
            reached: Barrier::new(2),
            resume: Barrier::new(2),
        });
        self.failpoints_map().insert(name, pause.clone());
        pause
    }

    pub(super) async fn failpoint(&self, name: &'static str) {
        let pause = self.failpoints_map().remove(name);
        if let Some(pause) = pause {
            pause.reached.wait().await;
            pause.resume.wait().await;
        }
    }

    fn failpoints_map(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Arc<Pause>>> {
        self.inner
            .failpoints
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
