//! Webhooks by event and outcome: what LiveKit sent and what came of it,
//! including the ones ignored (unknown rooms are logged and counted).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct WebhookMetrics {
    webhooks: IntCounterVec,
    /// Rows the reconciliation pass changed (a lost webhook made good).
    pub reconciled: prometheus::IntCounter,
}

/// Outcomes, the `outcome` label's whole range.
pub mod outcome {
    pub const APPLIED: &str = "applied";
    pub const UNCHANGED: &str = "unchanged";
    pub const IGNORED_EVENT: &str = "ignored_event";
    pub const IGNORED_ROOM: &str = "ignored_room";
    pub const IGNORED_DELETED: &str = "ignored_deleted_meeting";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const MALFORMED: &str = "malformed";
    pub const FAILED: &str = "failed";
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let webhooks = IntCounterVec::new(
            Opts::new(
                "huddle_recording_webhooks_total",
                "LiveKit webhooks by event (egress_* or other) and outcome",
            ),
            &["event", "outcome"],
        )?;
        registry.register(Box::new(webhooks.clone()))?;
        let reconciled = prometheus::IntCounter::new(
            "huddle_recording_reconciled_total",
            "Recordings the reconciliation pass moved after asking LiveKit (lost webhooks)",
        )?;
        registry.register(Box::new(reconciled.clone()))?;
        Ok(Self {
            webhooks,
            reconciled,
        })
    }

    /// `event` is kept to a bounded set: the egress events or `other`.
    pub fn count(&self, event: &str, outcome: &str) {
        let event = match event {
            "egress_started" | "egress_updated" | "egress_ended" => event,
            "" => "unknown",
            _ => "other",
        };
        self.webhooks.with_label_values(&[event, outcome]).inc();
    }

    /// Current count (tests).
    pub fn get(&self, event: &str, outcome: &str) -> u64 {
        self.webhooks.with_label_values(&[event, outcome]).get()
    }
}
