//! The tonic implementation of `huddle.recording.v1.RecordingService`.
//! Reads are authorized by the gateway (meeting-service's CheckAccess)
//! before they reach here; webhooks are verified here.

use cache_core::{Cache, Invalidation};
use diesel_async::AsyncConnection;
use huddle_db::Database;
use huddle_domain::{id, time};
use huddle_proto::recording::v1::{
    DeleteMeetingDataRequest, DeleteMeetingDataResponse, HandleWebhookRequest,
    HandleWebhookResponse, ListRecordingsResponse, MintRoomTokenRequest, Recording,
    RecordingStatus, RecordingsRequest, RoomToken, StartRecordingRequest, StopRecordingRequest,
    WebhookOutcome, recording_service_server::RecordingService,
};
use huddle_serve::Outbox;
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use livekit_protocol::WebhookEvent;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    LivekitKeys, cache,
    db::{self, RecordingRow},
    egress::{self, Parsed, Seen},
    error::RecordingError,
    media::MediaConfig,
    metrics::{WebhookMetrics, outcome},
};

/// Larger bodies are not LiveKit's (the gateway refuses them first).
const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct RecordingApi {
    pub(crate) db: Database,
    cache: Cache,
    pub(crate) outbox: Outbox,
    receiver: WebhookReceiver,
    metrics: WebhookMetrics,
    pub(crate) keys: LivekitKeys,
    pub(crate) media: MediaConfig,
    /// LiveKit's Egress API (`None`: no LIVEKIT_URL).
    pub(crate) egress: Option<std::sync::Arc<livekit_api::services::egress::EgressClient>>,
}

/// What a verified egress webhook did.
pub(crate) enum Applied {
    /// The row was created or changed; its keys were invalidated.
    Changed,
    /// A replay, or older than the row.
    Unchanged,
    /// The meeting was deleted (its cascade already ran).
    MeetingDeleted,
}

impl RecordingApi {
    pub fn new(
        db: Database,
        cache: Cache,
        outbox: Outbox,
        keys: LivekitKeys,
        media: MediaConfig,
        metrics: WebhookMetrics,
    ) -> Self {
        Self {
            db,
            cache,
            outbox,
            receiver: keys.receiver(),
            metrics,
            egress: crate::control::egress_client(
                media.api_url.as_deref().or(media.url.as_deref()),
                &keys,
            ),
            keys,
            media,
        }
    }

    /// The event, if the token verifies (HS256 with our secret, `iss` = our
    /// key, not expired, `sha256` = the body's) and the body decodes.
    fn verify(&self, body: &[u8], authorization: &str) -> Result<WebhookEvent, RecordingError> {
        if body.len() > MAX_WEBHOOK_BYTES {
            return Err(RecordingError::InvalidArgument(format!(
                "body: at most {MAX_WEBHOOK_BYTES} bytes"
            )));
        }
        let token = authorization.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if token.is_empty() {
            return Err(RecordingError::BadSignature(
                "missing Authorization header".to_owned(),
            ));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| RecordingError::InvalidArgument("body: not UTF-8".to_owned()))?;
        self.receiver.receive(body, token).map_err(|e| match e {
            WebhookError::InvalidData(e) => {
                RecordingError::InvalidArgument(format!("body: not a LiveKit webhook event: {e}"))
            }
            other => RecordingError::BadSignature(other.to_string()),
        })
    }

    /// Creates or moves the egress's row, under the meeting's lock; records
    /// the invalidation only when the row really changed.
    async fn apply(&self, seen: &Seen) -> Result<Applied, RecordingError> {
        let mut conn = self.db.conn().await?;
        let (applied, recorded) = conn
            .transaction::<_, RecordingError, _>(async |conn| apply_in(conn, seen).await)
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok(applied)
    }

    async fn webhook(
        &self,
        req: HandleWebhookRequest,
    ) -> (String, Result<WebhookOutcome, RecordingError>) {
        let event = match self.verify(&req.body, &req.authorization) {
            Ok(event) => event,
            Err(e) => return (String::new(), Err(e)),
        };
        let result = match egress::parse(&event) {
            Err(e) => Err(e),
            Ok(Parsed::OtherEvent) => {
                self.metrics.count(&event.event, outcome::IGNORED_EVENT);
                Ok(WebhookOutcome::Ignored)
            }
            Ok(Parsed::UnknownRoom(room)) => {
                tracing::info!(event = %event.event, %room, "webhook for a room that is no meeting: ignored");
                self.metrics.count(&event.event, outcome::IGNORED_ROOM);
                Ok(WebhookOutcome::Ignored)
            }
            Ok(Parsed::Egress(seen)) => self.apply(&seen).await.map(|applied| {
                let (label, answer) = match applied {
                    Applied::Changed => (outcome::APPLIED, WebhookOutcome::Applied),
                    Applied::Unchanged => (outcome::UNCHANGED, WebhookOutcome::Unchanged),
                    Applied::MeetingDeleted => {
                        tracing::info!(meeting = %seen.meeting, egress = %seen.egress_id,
                            "webhook for a deleted meeting: ignored");
                        (outcome::IGNORED_DELETED, WebhookOutcome::Ignored)
                    }
                };
                self.metrics.count(&event.event, label);
                answer
            }),
        };
        (event.event, result)
    }
}

#[tonic::async_trait]
impl RecordingService for RecordingApi {
    async fn handle_webhook(
        &self,
        req: Request<HandleWebhookRequest>,
    ) -> Result<Response<HandleWebhookResponse>, Status> {
        let (event, result) = self.webhook(req.into_inner()).await;
        match result {
            Ok(outcome) => Ok(Response::new(HandleWebhookResponse {
                outcome: outcome.into(),
            })),
            Err(e) => {
                let label = match &e {
                    RecordingError::BadSignature(why) => {
                        tracing::warn!(%why, "webhook refused: bad signature");
                        outcome::UNAUTHENTICATED
                    }
                    RecordingError::InvalidArgument(_) => outcome::MALFORMED,
                    _ => outcome::FAILED,
                };
                self.metrics.count(&event, label);
                Err(e.into())
            }
        }
    }

    async fn get_latest_recording(
        &self,
        req: Request<RecordingsRequest>,
    ) -> Result<Response<Recording>, Status> {
        async {
            let meeting = id::parse("meetingId", &req.get_ref().meeting_id)?;
            let row = cache::latest(&self.cache, &self.db, meeting)
                .await?
                .ok_or(RecordingError::NotFound)?;
            Ok(Response::new(to_proto(row)))
        }
        .await
        .map_err(|e: RecordingError| Status::from(e))
    }

    async fn list_recordings(
        &self,
        req: Request<RecordingsRequest>,
    ) -> Result<Response<ListRecordingsResponse>, Status> {
        async {
            let meeting = id::parse("meetingId", &req.get_ref().meeting_id)?;
            let rows = cache::all(&self.cache, &self.db, meeting).await?;
            Ok(Response::new(ListRecordingsResponse {
                recordings: rows.into_iter().map(to_proto).collect(),
            }))
        }
        .await
        .map_err(|e: RecordingError| Status::from(e))
    }

    async fn delete_meeting_data(
        &self,
        req: Request<DeleteMeetingDataRequest>,
    ) -> Result<Response<DeleteMeetingDataResponse>, Status> {
        async {
            let meeting = id::parse("meetingId", &req.get_ref().meeting_id)?;
            self.delete_meeting_data(meeting).await?;
            Ok(Response::new(DeleteMeetingDataResponse {}))
        }
        .await
        .map_err(|e: RecordingError| Status::from(e))
    }

    async fn mint_room_token(
        &self,
        req: Request<MintRoomTokenRequest>,
    ) -> Result<Response<RoomToken>, Status> {
        Ok(Response::new(self.mint(req.get_ref())?))
    }

    async fn start_recording(
        &self,
        req: Request<StartRecordingRequest>,
    ) -> Result<Response<Recording>, Status> {
        let this = self.clone();
        huddle_serve::to_completion(
            async move { Ok(Response::new(this.start_recording(&req).await?)) },
        )
        .await
    }

    async fn stop_recording(
        &self,
        req: Request<StopRecordingRequest>,
    ) -> Result<Response<Recording>, Status> {
        let this = self.clone();
        huddle_serve::to_completion(async move {
            Ok(Response::new(this.stop_recording(req.get_ref()).await?))
        })
        .await
    }
}

impl RecordingApi {
    /// Idempotent: a second call finds nothing left and deletes nothing.
    async fn delete_meeting_data(&self, meeting: Uuid) -> Result<(), RecordingError> {
        let mut conn = self.db.conn().await?;
        let (deleted, recorded) = conn
            .transaction::<_, RecordingError, _>(async |conn| {
                db::lock_meeting(conn, meeting).await?;
                let deleted = db::delete_meeting(conn, meeting).await?;
                // Also clears values a read filled after the meeting's own
                // delete invalidated them (the cascade runs later).
                let invalidation = Invalidation::recording_status_change(meeting);
                Ok((deleted, Outbox::record(conn, invalidation).await?))
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        tracing::info!(%meeting, deleted, "meeting's recordings deleted");
        Ok(())
    }
}

/// Creates or moves the egress's row in the caller's transaction, under the
/// meeting's lock; records the invalidation only when the row changed.
pub(crate) async fn apply_in(
    conn: &mut diesel_async::AsyncPgConnection,
    seen: &Seen,
) -> Result<(Applied, Option<huddle_serve::Recorded>), RecordingError> {
    db::lock_meeting(conn, seen.meeting).await?;
    if db::is_deleted(conn, seen.meeting).await? {
        return Ok((Applied::MeetingDeleted, None));
    }
    match db::find_for_update(conn, &seen.egress_id).await? {
        None => {
            db::insert(
                conn,
                seen.meeting,
                &seen.egress_id,
                &egress::first_state(seen),
            )
            .await?
        }
        Some(row) if row.meeting_id != seen.meeting => {
            tracing::warn!(egress = %seen.egress_id, stored = %row.meeting_id,
                room = %seen.meeting, "egress reported for another room: ignored");
            return Ok((Applied::Unchanged, None));
        }
        Some(row) => {
            let current = row.state();
            let next = egress::merge(&current, seen);
            if next == current {
                return Ok((Applied::Unchanged, None));
            }
            db::update(conn, row.id, &next).await?;
        }
    }
    let invalidation = Invalidation::recording_status_change(seen.meeting);
    Ok((
        Applied::Changed,
        Some(Outbox::record(conn, invalidation).await?),
    ))
}

pub(crate) fn to_proto(row: RecordingRow) -> Recording {
    let status = match row.status() {
        egress::Status::Processing => RecordingStatus::Processing,
        egress::Status::Ready => RecordingStatus::Ready,
        egress::Status::Failed => RecordingStatus::Failed,
    };
    Recording {
        id: row.id.to_string(),
        meeting_id: row.meeting_id.to_string(),
        egress_id: row.egress_id,
        status: status.into(),
        file_url: row.file_url,
        duration_seconds: row.duration_seconds,
        file_size_bytes: row.file_size_bytes,
        error: row.error,
        started_at: Some(time::to_proto(row.started_at)),
        ended_at: row.ended_at.map(time::to_proto),
        created_at: Some(time::to_proto(row.created_at)),
        updated_at: Some(time::to_proto(row.updated_at)),
    }
}
