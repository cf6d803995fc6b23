//! Starting and stopping a meeting's recording (host only): meeting-service
//! says who the caller is to the meeting, recording-service calls LiveKit's
//! Egress API and writes the row. 202: the recording runs on at LiveKit,
//! and its webhooks move the row on.

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::id as ids;
use huddle_proto::{meeting::v1::MeetingStatus, recording::v1 as pb};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::meetings::{access, caller};
use crate::recordings::RecordingDto;
use crate::request_id::RequestId;
use crate::{Backends, Success, success};

/// The host, for an existing meeting (a participant is told no, a stranger
/// that the meeting does not exist); with `live`, only while it is LIVE.
async fn as_host(
    principal: &Principal,
    rid: &RequestId,
    backends: &Backends,
    meeting: Uuid,
    live: bool,
) -> Result<Uuid, ApiError> {
    let caller = caller(principal)?;
    let access = access(backends, rid, meeting, caller).await?;
    if access.host_id != caller.to_string() {
        return Err(ApiError::forbidden("only the host may record this meeting"));
    }
    if live && access.status != MeetingStatus::Live as i32 {
        return Err(ApiError::forbidden(
            "the meeting is not LIVE: nothing to record",
        ));
    }
    Ok(caller)
}

/// Start recording the meeting's room (host of a LIVE meeting): a LiveKit
/// room-composite egress, its row PROCESSING at once.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/recordings",
    tag = "recordings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Started: the recording, PROCESSING until LiveKit reports it done", body = Success<RecordingDto>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the host, the meeting is not LIVE, or not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant", body = ErrorBody),
        (status = 503, description = "LiveKit is not configured, down or refused: nothing was written", body = ErrorBody),
    )
)]
pub async fn start_recording(
    principal: Principal,
    rid: RequestId,
    key: IdempotencyKey,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meeting = ids::parse("id", &id)?;
    let host = as_host(&principal, &rid, &backends, meeting, true).await?;
    let message = pb::StartRecordingRequest {
        meeting_id: meeting.to_string(),
        caller_id: host.to_string(),
    };
    let mut request = backends.request(message, &rid);
    key.attach(&mut request);
    let recording = backends
        .recordings()
        .start_recording(request)
        .await?
        .into_inner();
    Ok(success(
        StatusCode::ACCEPTED,
        RecordingDto::try_from(recording)?,
    ))
}

/// Stop a recording of the meeting (host). Idempotent: a recording that
/// already ended answers as it is.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/recordings/{egressId}/stop",
    tag = "recordings",
    params(
        ("id" = Uuid, Path, description = "Meeting id"),
        ("egressId" = String, Path, description = "The recording's LiveKit egress id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Stopping (or already ended): the recording", body = Success<RecordingDto>),
        (status = 400, description = "Invalid id or egress id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the host, or not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting (or the caller is neither host nor participant), or no such recording of this meeting", body = ErrorBody),
        (status = 503, description = "LiveKit is not configured, down or refused", body = ErrorBody),
    )
)]
pub async fn stop_recording(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, egress_id) = path.into_inner();
    let meeting = ids::parse("id", &id)?;
    as_host(&principal, &rid, &backends, meeting, false).await?;
    let message = pb::StopRecordingRequest {
        meeting_id: meeting.to_string(),
        egress_id,
    };
    let recording = backends
        .recordings()
        .stop_recording(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::ACCEPTED,
        RecordingDto::try_from(recording)?,
    ))
}
