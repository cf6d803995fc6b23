//! Webhooks get lost: a periodic pass asks LiveKit (`ListEgress`, through
//! `livekit-api`'s `EgressClient`) about recordings PROCESSING longer than
//! a bound, and applies what it learns through the webhooks' own path
//! (`apply_in`), so a recording whose `egress_ended` never arrived still
//! ends READY (or FAILED). One replica at a time: the pass holds a
//! transaction-scoped advisory lock (safe behind a transaction-pooling
//! pgbouncer, unlike a session lock) and skips when another holds it.
//! Bounded: at most [`BATCH`] recordings per pass.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, RunQueryDsl};
use huddle_db::Database;
use huddle_serve::{
    Outbox,
    relay::{Pass, Relay, Wake},
};
use livekit_api::services::egress::{EgressClient, EgressListFilter, EgressListOptions};

use crate::{control::seen_of, db, error::RecordingError, grpc::apply_in};

/// Recordings asked about per pass.
pub const BATCH: i64 = 20;
/// The pass's advisory lock key ("reconcil").
const LOCK_KEY: i64 = 0x7265_636f_6e63_696c;

pub const POLICY: huddle_serve::relay::Policy = huddle_serve::relay::Policy {
    idle: Duration::from_secs(60),
    first_backoff: Duration::from_secs(5),
    max_backoff: Duration::from_secs(300),
};

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(Clone)]
pub struct EgressReconciler {
    db: Database,
    outbox: Outbox,
    egress: Arc<EgressClient>,
    /// How long a recording may be PROCESSING before LiveKit is asked.
    after: Duration,
    corrected: prometheus::IntCounter,
}

impl EgressReconciler {
    pub fn new(
        db: Database,
        outbox: Outbox,
        egress: Arc<EgressClient>,
        after: Duration,
        corrected: prometheus::IntCounter,
    ) -> Self {
        Self {
            db,
            outbox,
            egress,
            after,
            corrected,
        }
    }

    /// One pass; how many rows it changed.
    pub async fn pass(&self) -> Result<usize, RecordingError> {
        let before = Utc::now() - chrono::Duration::from_std(self.after).unwrap_or_default();
        let mut conn = self.db.conn().await?;
        let (changed, recorded) = conn
            .transaction::<_, RecordingError, _>(async |conn| {
                let lock = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                    .bind::<BigInt, _>(LOCK_KEY)
                    .get_result::<Locked>(conn)
                    .await?;
                if !lock.locked {
                    return Ok((0, Vec::new()));
                }
                let mut recorded = Vec::new();
                for row in db::processing_before(conn, before, BATCH).await? {
                    let options = EgressListOptions {
                        filter: EgressListFilter::Egress(row.egress_id.clone()),
                        ..EgressListOptions::default()
                    };
                    let listed = self.egress.list_egress(options).await.map_err(|e| {
                        RecordingError::MediaUnavailable(format!("LiveKit ListEgress: {e}"))
                    })?;
                    let Some(info) = listed.into_iter().find(|e| e.egress_id == row.egress_id)
                    else {
                        tracing::warn!(egress = %row.egress_id, "reconcile: egress unknown to LiveKit");
                        continue;
                    };
                    let seen = seen_of(info, "egress_updated")?;
                    if let (_, Some(r)) = apply_in(conn, &seen).await? {
                        recorded.push(r);
                    }
                }
                Ok((recorded.len(), recorded))
            })
            .await?;
        drop(conn);
        for r in recorded {
            self.outbox.after_commit(Some(r)).await?;
        }
        self.corrected.inc_by(changed as u64);
        Ok(changed)
    }
}

impl Relay for EgressReconciler {
    fn name(&self) -> &'static str {
        "egress-reconcile"
    }

    async fn drain(&self) -> Result<Pass, String> {
        match self.pass().await {
            Ok(done) => Ok(Pass { done, failed: 0 }),
            Err(e) => {
                tracing::warn!(error = %e, "egress reconciliation pass failed");
                Ok(Pass { done: 0, failed: 1 })
            }
        }
    }

    async fn woken(&self) -> Wake {
        std::future::pending().await
    }
}
