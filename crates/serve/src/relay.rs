//! One runner for every background relay (the invalidation outbox, the
//! meeting-deletion cascade): drain at start — what a crash left behind —
//! then whenever woken or every idle tick, backing off while a pass fails.

use std::{future::Future, time::Duration};

use huddle_common::Shutdown;

/// What one pass achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Items completed.
    pub done: usize,
    /// Items still pending because something they need refused.
    pub failed: usize,
}

/// Why a relay was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Work is known to be possible now (a new item, a dependency back):
    /// run a pass at once.
    Now,
    /// Something failed in a request: while passes are failing, this keeps
    /// the current backoff rather than spin at the request rate.
    AfterBackoff,
}

pub trait Relay: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Processes what is pending once. `Err` when the relay's own storage
    /// cannot be read (it is retried with backoff like a failed item).
    fn drain(&self) -> impl Future<Output = Result<Pass, String>> + Send;

    /// Resolves when something asks for an early pass.
    fn woken(&self) -> impl Future<Output = Wake> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Pause between passes while nothing fails and nobody wakes the relay.
    pub idle: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

/// Runs `relay` until `shutdown`.
pub async fn run<R: Relay>(relay: R, policy: Policy, shutdown: Shutdown) {
    let mut backoff = policy.first_backoff;
    loop {
        let failing = match relay.drain().await {
            Ok(Pass { done, failed: 0 }) => {
                if done > 0 {
                    tracing::debug!(relay = relay.name(), done, "relay pass completed");
                }
                false
            }
            Ok(Pass { failed, .. }) => {
                tracing::debug!(relay = relay.name(), failed, ?backoff, "relay will retry");
                true
            }
            Err(error) => {
                tracing::warn!(relay = relay.name(), %error, ?backoff, "relay cannot read its queue");
                true
            }
        };
        let wait = if failing { backoff } else { policy.idle };
        backoff = if failing {
            (backoff * 2).min(policy.max_backoff)
        } else {
            policy.first_backoff
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            wake = relay.woken() => {
                if wake == Wake::AfterBackoff && failing {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.clone().wait() => return,
                    }
                }
            }
            _ = shutdown.clone().wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use tokio::sync::Notify;

    use super::*;

    /// Fails its first `fail_first` passes, then succeeds.
    struct Flaky {
        passes: Arc<AtomicUsize>,
        fail_first: usize,
        wake: Arc<Notify>,
    }

    impl Relay for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn drain(&self) -> Result<Pass, String> {
            let n = self.passes.fetch_add(1, Ordering::SeqCst);
            Ok(if n < self.fail_first {
                Pass { done: 0, failed: 1 }
            } else {
                Pass::default()
            })
        }

        async fn woken(&self) -> Wake {
            self.wake.notified().await;
            Wake::Now
        }
    }

    async fn until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        while tokio::time::Instant::now() < end {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        f()
    }

    /// Seen to fail when the runner ignored `woken` (passes stayed at 1
    /// until the 1 h idle tick).
    #[tokio::test]
    async fn a_wake_runs_a_pass_without_waiting_for_the_tick() {
        let passes = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let shutdown = Shutdown::new();
        let relay = Flaky {
            passes: passes.clone(),
            fail_first: 0,
            wake: wake.clone(),
        };
        let policy = Policy {
            idle: Duration::from_secs(3600),
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        };
        let task = tokio::spawn(run(relay, policy, shutdown.clone()));
        assert!(
            until(Duration::from_secs(5), || passes.load(Ordering::SeqCst)
                == 1)
            .await
        );
        wake.notify_one();
        assert!(
            until(Duration::from_secs(5), || passes.load(Ordering::SeqCst)
                == 2)
            .await
        );
        shutdown.trigger();
        task.await.unwrap();
    }

    /// Seen to fail when a failed pass waited the idle tick instead of the
    /// backoff (one pass in 5 s).
    #[tokio::test]
    async fn failing_passes_are_retried_with_backoff_then_settle() {
        let passes = Arc::new(AtomicUsize::new(0));
        let shutdown = Shutdown::new();
        let relay = Flaky {
            passes: passes.clone(),
            fail_first: 3,
            wake: Arc::default(),
        };
        let policy = Policy {
            idle: Duration::from_secs(3600),
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        };
        let task = tokio::spawn(run(relay, policy, shutdown.clone()));
        // Three failures, then the success that ends the retrying.
        assert!(
            until(Duration::from_secs(5), || passes.load(Ordering::SeqCst)
                == 4)
            .await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4, "idle after success");
        shutdown.trigger();
        task.await.unwrap();
    }
}
