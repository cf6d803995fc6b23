//! Recording control: start and stop a meeting's egress through LiveKit's
//! Egress API, called with `livekit-api`'s own `EgressClient` (LiveKit's
//! Twirp requests, signed with a `roomRecord` token). The gateway has
//! checked the caller is the meeting's host (and, to start, that it is
//! LIVE). The egress LiveKit answers is applied through the webhooks' own
//! path (`apply_in`), so the row a start creates and the one a webhook
//! creates are the same row, whichever lands first.

use std::sync::Arc;

use chrono::Utc;
use diesel_async::AsyncConnection;
use huddle_domain::id;
use huddle_proto::recording::v1::{Recording, StartRecordingRequest, StopRecordingRequest};
use huddle_serve::{IdempotencyKey, idempotency};
use livekit_api::services::{
    ServiceError, TwirpError, TwirpErrorCode,
    egress::{EgressClient, EgressOutput, RoomCompositeOptions},
};
use livekit_protocol::{EgressInfo, EncodedFileOutput, EncodedFileType, WebhookEvent};
use tonic::Request;

use crate::{
    RecordingApi, db,
    egress::{self, Parsed},
    error::RecordingError,
    grpc::{apply_in, to_proto},
};

/// How long one Egress API call may take before the start answers 503.
const EGRESS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Egress API client, when LiveKit is configured.
pub fn egress_client(url: Option<&str>, keys: &crate::LivekitKeys) -> Option<Arc<EgressClient>> {
    url.map(|url| {
        let client = EgressClient::with_api_key(url, &keys.api_key, &keys.api_secret)
            .with_request_timeout(EGRESS_CALL_TIMEOUT);
        Arc::new(client)
    })
}

/// LiveKit down or refusing, said so the client can act on it.
fn livekit_error(action: &str, e: &ServiceError) -> RecordingError {
    tracing::warn!(action, error = %e, "livekit egress call failed");
    RecordingError::MediaUnavailable(match e {
        ServiceError::Twirp(TwirpError::Twirp(code)) => {
            format!("LiveKit refused to {action} the recording: {}", code.msg)
        }
        _ => format!("LiveKit is unavailable: could not {action} the recording"),
    })
}

/// An egress as LiveKit answered it, as if its webhook had said so.
pub(crate) fn seen_of(info: EgressInfo, event: &str) -> Result<Box<egress::Seen>, RecordingError> {
    let event = WebhookEvent {
        event: event.to_owned(),
        egress_info: Some(info),
        created_at: Utc::now().timestamp(),
        ..WebhookEvent::default()
    };
    match egress::parse(&event)? {
        Parsed::Egress(seen) => Ok(seen),
        _ => Err(RecordingError::MediaUnavailable(
            "LiveKit answered an egress of another room".to_owned(),
        )),
    }
}

impl RecordingApi {
    fn egress(&self) -> Result<&EgressClient, RecordingError> {
        self.egress.as_deref().ok_or_else(|| {
            RecordingError::MediaUnavailable("LiveKit is not configured (LIVEKIT_URL)".to_owned())
        })
    }

    /// Claims the key, asks LiveKit, writes the PROCESSING row and keeps
    /// the answer, in one transaction: LiveKit refusing (or unreachable)
    /// rolls all of it back, and a replay never starts a second egress.
    pub(crate) async fn start_recording(
        &self,
        request: &Request<StartRecordingRequest>,
    ) -> Result<Recording, RecordingError> {
        let req = request.get_ref();
        let meeting = id::parse("meetingId", &req.meeting_id)?;
        let key = IdempotencyKey::of(request, "StartRecording", &req.caller_id)?;
        let client = self.egress()?;
        let output = EncodedFileOutput {
            file_type: EncodedFileType::Mp4.into(),
            filepath: self.media.recording_filepath.clone(),
            ..EncodedFileOutput::default()
        };
        let mut conn = self.db.conn().await?;
        let (answer, recorded) = conn
            .transaction::<_, RecordingError, _>(async |conn| {
                if let Some(first) = idempotency::claim(key.as_ref(), conn).await? {
                    return Ok((first, None));
                }
                let outputs = vec![EgressOutput::File(output)];
                let info = client
                    .start_room_composite_egress(
                        &meeting.to_string(),
                        outputs,
                        RoomCompositeOptions::default(),
                    )
                    .await
                    .map_err(|e| livekit_error("start", &e))?;
                let seen = seen_of(info, "egress_started")?;
                let (_, recorded) = apply_in(conn, &seen).await?;
                let row = db::find_for_update(conn, &seen.egress_id)
                    .await?
                    .ok_or(RecordingError::NotFound)?;
                let answer = to_proto(row);
                idempotency::keep(key.as_ref(), conn, &answer).await?;
                Ok((answer, recorded))
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok(answer)
    }

    /// Stops a PROCESSING egress of the meeting; a settled one (or one
    /// LiveKit already ended) answers its row as it is.
    pub(crate) async fn stop_recording(
        &self,
        req: &StopRecordingRequest,
    ) -> Result<Recording, RecordingError> {
        let meeting = id::parse("meetingId", &req.meeting_id)?;
        let egress_id = egress::egress_id(&req.egress_id)?;
        let mut conn = self.db.conn().await?;
        let row = db::find(&mut conn, egress_id)
            .await?
            .filter(|row| row.meeting_id == meeting)
            .ok_or(RecordingError::NotFound)?;
        drop(conn);
        if row.status() != egress::Status::Processing {
            return Ok(to_proto(row));
        }
        match self.egress()?.stop_egress(egress_id).await {
            Ok(info) => {
                let seen = seen_of(info, "egress_updated")?;
                let mut conn = self.db.conn().await?;
                let recorded = conn
                    .transaction::<_, RecordingError, _>(async |conn| {
                        Ok(apply_in(conn, &seen).await?.1)
                    })
                    .await?;
                drop(conn);
                self.outbox.after_commit(recorded).await?;
            }
            // Already ending or ended at LiveKit: its webhook (or the
            // reconciliation pass) settles the row.
            Err(ServiceError::Twirp(TwirpError::Twirp(TwirpErrorCode { code, .. })))
                if code == TwirpErrorCode::FAILED_PRECONDITION
                    || code == TwirpErrorCode::NOT_FOUND => {}
            Err(e) => return Err(livekit_error("stop", &e)),
        }
        let mut conn = self.db.conn().await?;
        let row = db::find(&mut conn, egress_id)
            .await?
            .ok_or(RecordingError::NotFound)?;
        Ok(to_proto(row))
    }
}
