//! Deleting a meeting's data in the services that own it (chat messages in
//! chat-service, the recording in recording-service).
//!
//! A meeting delete writes one `meeting_deletions` row in the same
//! transaction as the delete, so the intent cannot be lost. The relay then
//! asks every [`CascadeTarget`] to delete the meeting's data and removes the
//! row only when all of them acknowledged; a target that is down or fails is
//! retried with backoff (and at the next start) until it answers. Targets
//! must be idempotent: a row may be processed twice (two replicas, or a crash
//! between the acknowledgement and the row's removal), and a target that
//! already acknowledged is asked again when another target failed.
//!
//! Extension point: each service that holds meeting data gets a
//! [`CascadeTarget`] over its gRPC client (`DeleteMeetingData(meeting_id)`),
//! returned from `crate::cascade_targets` ([`ChatTarget`] for chat-service).
//! Nothing else changes.

use std::{sync::Arc, time::Duration};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use huddle_common::grpc_client::ChannelError;
use huddle_db::{Database, DbError};
use huddle_proto::chat::v1::{DeleteMeetingDataRequest, chat_service_client::ChatServiceClient};
use huddle_serve::relay::{Pass, Policy, Relay, Wake};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::schema::meeting_deletions;

const BATCH: i64 = 50;

/// Targets are other services: a failing one is retried for as long as it
/// takes, at most every 30 s.
pub const RELAY_POLICY: Policy = Policy {
    idle: Duration::from_secs(5),
    first_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_secs(30),
};

/// A service that owns data of meetings and must delete it when the meeting
/// is deleted.
pub trait CascadeTarget: Send + Sync + 'static {
    /// For logs and the `last_error` column.
    fn service(&self) -> &'static str;

    /// Deletes everything the service holds for `meeting` (and its cache
    /// keys). Succeeds when there is nothing (left) to delete.
    fn delete_meeting_data(&self, meeting: Uuid) -> BoxFuture<'_, Result<(), String>>;
}

#[derive(Clone)]
pub struct Cascade {
    db: Database,
    targets: Arc<Vec<Arc<dyn CascadeTarget>>>,
    wake: Arc<Notify>,
}

impl Cascade {
    pub fn new(db: Database, targets: Vec<Arc<dyn CascadeTarget>>) -> Self {
        Self {
            db,
            targets: Arc::new(targets),
            wake: Arc::default(),
        }
    }

    /// Records the deletion inside the caller's open (delete) transaction.
    pub async fn record(conn: &mut AsyncPgConnection, meeting: Uuid) -> Result<(), DbError> {
        diesel::insert_into(meeting_deletions::table)
            .values(meeting_deletions::meeting_id.eq(meeting))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(())
    }

    /// After the delete committed: process it soon, without waiting a tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Deletions not yet acknowledged by every target.
    pub async fn pending(&self) -> Result<i64, DbError> {
        let mut conn = self.db.conn().await?;
        Ok(meeting_deletions::table
            .count()
            .get_result(&mut conn)
            .await?)
    }

    /// Processes every pending deletion once, oldest first. Returns how many
    /// completed and how many are still pending after a failure.
    pub async fn drain(&self) -> Result<(usize, usize), DbError> {
        let rows: Vec<Uuid> = {
            let mut conn = self.db.conn().await?;
            meeting_deletions::table
                .select(meeting_deletions::meeting_id)
                // Fresh deletions first, so one that keeps failing cannot
                // hold back the others.
                .order((
                    meeting_deletions::attempts.asc(),
                    meeting_deletions::deleted_at.asc(),
                    meeting_deletions::meeting_id.asc(),
                ))
                .limit(BATCH)
                .load(&mut conn)
                .await?
        };
        let (mut done, mut failed) = (0, 0);
        for meeting in rows {
            match self.delete_everywhere(meeting).await {
                Ok(()) => {
                    let mut conn = self.db.conn().await?;
                    diesel::delete(meeting_deletions::table.find(meeting))
                        .execute(&mut conn)
                        .await?;
                    done += 1;
                }
                Err(error) => {
                    tracing::warn!(%meeting, %error, "meeting data deletion will be retried");
                    let mut conn = self.db.conn().await?;
                    diesel::update(meeting_deletions::table.find(meeting))
                        .set((
                            meeting_deletions::attempts.eq(meeting_deletions::attempts + 1),
                            meeting_deletions::last_error.eq(Some(error)),
                        ))
                        .execute(&mut conn)
                        .await?;
                    failed += 1;
                }
            }
        }
        Ok((done, failed))
    }

    /// Asks every target; the error names the targets that failed.
    async fn delete_everywhere(&self, meeting: Uuid) -> Result<(), String> {
        let results = futures::future::join_all(
            self.targets
                .iter()
                .map(|t| async move { (t.service(), t.delete_meeting_data(meeting).await) }),
        )
        .await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|(service, r)| r.err().map(|e| format!("{service}: {e}")))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Cascade {
    /// Runs the relay until `shutdown` (the service runs it through its kit).
    pub async fn run_relay(self, shutdown: huddle_common::Shutdown) {
        huddle_serve::relay::run(self, RELAY_POLICY, shutdown).await;
    }
}

impl Relay for Cascade {
    fn name(&self) -> &'static str {
        "meeting-deletions"
    }

    async fn drain(&self) -> Result<Pass, String> {
        let (done, failed) = Cascade::drain(self).await.map_err(|e| e.to_string())?;
        Ok(Pass { done, failed })
    }

    async fn woken(&self) -> Wake {
        // A new deletion: its targets may well answer even while an older
        // one keeps failing (fresh rows are tried first).
        self.wake.notified().await;
        Wake::Now
    }
}

/// chat-service: deletes the meeting's messages and keys, and refuses
/// posts to it from then on (so a post racing the delete leaves no row).
pub struct ChatTarget {
    client: ChatServiceClient<huddle_common::grpc_client::GrpcChannel>,
}

impl ChatTarget {
    pub fn new(
        addr: &str,
        call_timeout: Duration,
        metrics: huddle_common::grpc_metrics::GrpcMetrics,
    ) -> Result<Self, ChannelError> {
        let channel = huddle_serve::users::peer_channel(addr, call_timeout, metrics)?;
        Ok(Self {
            client: ChatServiceClient::new(channel),
        })
    }
}

impl CascadeTarget for ChatTarget {
    fn service(&self) -> &'static str {
        "chat"
    }

    fn delete_meeting_data(&self, meeting: Uuid) -> BoxFuture<'_, Result<(), String>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .delete_meeting_data(DeleteMeetingDataRequest {
                    meeting_id: meeting.to_string(),
                })
                .await
                .map(|_| ())
                .map_err(|status| status.message().to_owned())
        })
    }
}
