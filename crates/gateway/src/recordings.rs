//! Recordings: LiveKit's egress webhooks, passed through untouched to
//! recording-service (which holds the secret and verifies them), and a
//! meeting's recordings, read by its host or participants. The gateway
//! authorizes reads through meeting-service's CheckAccess first; the
//! recording service trusts it, as meeting-service trusts its caller id.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, http::header, web};
use huddle_common::ErrorCode;
use huddle_domain::id as ids;
use huddle_proto::recording::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::meetings::dto::{optional_time, time};
use crate::meetings::{access, caller};
use crate::request_id::RequestId;
use crate::route::resource;
use crate::{Backends, MAX_BODY_BYTES, Success, success};

pub const WEBHOOK_PATH: &str = "/api/webhooks/livekit";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource(WEBHOOK_PATH)
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route(web::post().to(livekit_webhook)),
    )
    .service(resource("/api/meetings/{id}/recording").route(web::get().to(get_recording)))
    .service(
        resource("/api/meetings/{id}/recordings")
            .route(web::get().to(list_recordings))
            .route(web::post().to(crate::recording_control::start_recording)),
    )
    .service(
        resource("/api/meetings/{id}/recordings/{egressId}/stop")
            .route(web::post().to(crate::recording_control::stop_recording)),
    );
}

/// A recording of a meeting (one LiveKit egress).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub meeting_id: String,
    pub egress_id: String,
    /// PROCESSING, READY or FAILED; moves only forward.
    #[schema(example = "READY")]
    pub status: &'static str,
    #[schema(required = true)]
    pub file_url: Option<String>,
    #[schema(required = true)]
    pub duration_seconds: Option<i64>,
    #[schema(required = true)]
    pub file_size_bytes: Option<i64>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl TryFrom<pb::Recording> for RecordingDto {
    type Error = ApiError;

    fn try_from(r: pb::Recording) -> Result<Self, ApiError> {
        let status = match pb::RecordingStatus::try_from(r.status) {
            Ok(pb::RecordingStatus::Processing) => "PROCESSING",
            Ok(pb::RecordingStatus::Ready) => "READY",
            Ok(pb::RecordingStatus::Failed) => "FAILED",
            _ => {
                tracing::error!("recording-service returned an unknown status");
                return Err(ApiError::internal());
            }
        };
        Ok(Self {
            status,
            started_at: time(r.started_at, "started_at")?,
            ended_at: optional_time(r.ended_at, "ended_at")?,
            created_at: time(r.created_at, "created_at")?,
            updated_at: time(r.updated_at, "updated_at")?,
            id: r.id,
            meeting_id: r.meeting_id,
            egress_id: r.egress_id,
            file_url: r.file_url,
            duration_seconds: r.duration_seconds,
            file_size_bytes: r.file_size_bytes,
            error: r.error,
        })
    }
}

/// What became of a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `applied` (a recording was created or changed), `unchanged` (a
    /// replay, or older than what is stored) or `ignored` (another event, a
    /// room that is no meeting, a deleted meeting).
    #[schema(example = "applied")]
    pub outcome: &'static str,
}

/// LiveKit's webhook (`application/webhook+json`, signed with the LiveKit
/// API secret in `Authorization`). Egress events create and advance a
/// meeting's recordings; anything else is acknowledged and ignored.
#[utoipa::path(
    post,
    path = "/api/webhooks/livekit",
    tag = "recordings",
    request_body(content = Object, content_type = "application/webhook+json",
        description = "A LiveKit WebhookEvent, as LiveKit sends it"),
    params(("Authorization" = String, Header,
        description = "The JWT LiveKit signs the body with (HS256, `iss` = API key, `sha256` = the body's base64 SHA-256)")),
    responses(
        (status = 200, description = "Applied or ignored", body = Success<WebhookAnswer>),
        (status = 400, description = "Malformed event", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 503, description = "A dependency is down; LiveKit retries", body = ErrorBody),
    )
)]
pub async fn livekit_webhook(
    req: HttpRequest,
    rid: RequestId,
    backends: web::Data<Backends>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // A header that is not visible ASCII cannot hold a JWT: no signature.
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let message = pb::HandleWebhookRequest {
        body: body.to_vec(),
        authorization,
    };
    let answer = backends
        .recordings()
        .handle_webhook(backends.request(message, &rid))
        .await?
        .into_inner();
    let outcome = match pb::WebhookOutcome::try_from(answer.outcome) {
        Ok(pb::WebhookOutcome::Applied) => "applied",
        Ok(pb::WebhookOutcome::Unchanged) => "unchanged",
        _ => "ignored",
    };
    Ok(success(StatusCode::OK, WebhookAnswer { outcome }))
}

/// The meeting's newest recording (host or participant, present or past).
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/recording",
    tag = "recordings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The newest recording", body = Success<RecordingDto>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such meeting, or the caller is neither host nor participant. `NO_RECORDING`: the meeting has no recording yet", body = ErrorBody),
    )
)]
pub async fn get_recording(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let message = authorized(&principal, &rid, &backends, &id).await?;
    let recording = backends
        .recordings()
        .get_latest_recording(backends.request(message, &rid))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => ApiError::new(ErrorCode::NoRecording, "no recording yet"),
            _ => ApiError::from(status),
        })?
        .into_inner();
    Ok(success(StatusCode::OK, RecordingDto::try_from(recording)?))
}

/// The meeting's recordings, newest first (at most 100; host or
/// participant, present or past). Empty when it has none.
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/recordings",
    tag = "recordings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recordings, newest first", body = Success<Vec<RecordingDto>>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant", body = ErrorBody),
    )
)]
pub async fn list_recordings(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let message = authorized(&principal, &rid, &backends, &id).await?;
    let recordings = backends
        .recordings()
        .list_recordings(backends.request(message, &rid))
        .await?
        .into_inner()
        .recordings
        .into_iter()
        .map(RecordingDto::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(success(StatusCode::OK, recordings))
}

/// The request for recording-service, once meeting-service says the caller
/// is the meeting's host or a (past) participant.
async fn authorized(
    principal: &Principal,
    rid: &RequestId,
    backends: &Backends,
    raw_id: &str,
) -> Result<pb::RecordingsRequest, ApiError> {
    let meeting = ids::parse("id", raw_id)?;
    access(backends, rid, meeting, caller(principal)?).await?;
    Ok(pb::RecordingsRequest {
        meeting_id: meeting.to_string(),
    })
}
