//! Joining, leaving and the participant views of a meeting.

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::id as ids;
use huddle_proto::meeting::v1 as pb;

use super::caller;
use super::dto::{self, ActiveCount, JoinResult, Participant, ParticipantWithUser};
use super::input::{self, JoinMeetingBody};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::request_id::RequestId;
use crate::{Backends, Success, success};

/// Join the meeting an invite code belongs to. Idempotent: joining again
/// while in it changes nothing.
#[utoipa::path(
    post,
    path = "/api/meetings/join",
    tag = "meetings",
    request_body = JoinMeetingBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "In the meeting", body = Success<JoinResult>),
        (status = 400, description = "Malformed invite code", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a registered user's token", body = ErrorBody),
        (status = 404, description = "Invalid invite code", body = ErrorBody),
        (status = 409, description = "The meeting has ENDED", body = ErrorBody),
    )
)]
pub async fn join_meeting(
    principal: Principal,
    rid: RequestId,
    key: IdempotencyKey,
    backends: web::Data<Backends>,
    body: web::Json<JoinMeetingBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&principal)?;
    let invite_code =
        input::invite_code(input::required("inviteCode", body.invite_code.as_ref())?)?;
    let message = pb::JoinMeetingRequest {
        caller_id: caller.to_string(),
        invite_code,
    };
    let mut request = backends.request(message, &rid);
    key.attach(&mut request);
    let joined = backends
        .meetings()
        .join_meeting(request)
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, JoinResult::try_from(joined)?))
}

/// Leave a meeting (participant only). Idempotent.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/leave",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's participation, with `leftAt`", body = Success<Participant>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "The host, who never joined (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller never joined it: one answer, so ids cannot be probed", body = ErrorBody),
    )
)]
pub async fn leave_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = pb::LeaveMeetingRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let participant = backends
        .meetings()
        .leave_meeting(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, Participant::try_from(participant)?))
}

/// `?after=&limit=` of the participant list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ParticipantsQuery {
    /// Start after this participant id: the `after` of the previous page's
    /// `Link: <…>; rel="next"`. An id that is no participant of this
    /// meeting gives an empty page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub after: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// Everyone who joined, oldest join first (host or participant), a page at a
/// time; while more follow, a `Link` header with `rel="next"` says where.
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/participants",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id"), ParticipantsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Participants", body = Success<Vec<ParticipantWithUser>>,
            headers(("Link" = String, description = "`<url>; rel=\"next\"` while another page follows"))),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token (an admin token is nobody's host or participant)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant: one answer, so ids cannot be probed", body = ErrorBody),
    )
)]
pub async fn list_participants(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    query: web::Query<ParticipantsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let after = query
        .after
        .as_deref()
        .map(|a| ids::parse("after", a))
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 0,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be a whole number from 1 to 100"))?,
    };
    let message = pb::ListParticipantsRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
        after: after.map(|a| a.to_string()).unwrap_or_default(),
        limit,
    };
    let list = backends
        .meetings()
        .list_participants(backends.request(message, &rid))
        .await?
        .into_inner();
    let mut response = success(
        StatusCode::OK,
        dto::all::<_, ParticipantWithUser>(list.participants)?,
    );
    if !list.next_after.is_empty() {
        let limit = if limit == 0 {
            String::new()
        } else {
            format!("&limit={limit}")
        };
        let link = format!(
            "</api/meetings/{id}/participants?after={}{limit}>; rel=\"next\"",
            list.next_after
        );
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&link) {
            response
                .headers_mut()
                .insert(actix_web::http::header::LINK, value);
        }
    }
    Ok(response)
}

/// How many are in the meeting now (host or participant).
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/participants/count",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active participants", body = Success<ActiveCount>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token (an admin token is nobody's host or participant)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant: one answer, so ids cannot be probed", body = ErrorBody),
    )
)]
pub async fn count_participants(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = pb::CountActiveParticipantsRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let count = backends
        .meetings()
        .count_active_participants(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, ActiveCount { count: count.count }))
}
