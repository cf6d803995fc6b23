//! `POST /api/meetings/{id}/media-token`: a fresh LiveKit room token.
//! meeting-service decides who may have one and recording-service signs it;
//! the gateway never holds the LiveKit secret.

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::id as ids;
use huddle_proto::meeting::v1 as pb;

use super::caller;
use super::dto::MediaToken;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::request_id::RequestId;
use crate::{Backends, Success, success};

/// A fresh room token for the host or an active participant of a LIVE
/// meeting. Never cached; rate limited per user.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/media-token",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A room token", body = Success<MediaToken>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "The meeting is not LIVE, the caller left it (join again first), or not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant: one answer, so ids cannot be probed", body = ErrorBody),
        (status = 503, description = "LiveKit is not configured, or a backend is down", body = ErrorBody),
    )
)]
pub async fn media_token(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = pb::IssueMediaTokenRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let token = backends
        .meetings()
        .issue_media_token(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, MediaToken::try_from(token)?))
}
