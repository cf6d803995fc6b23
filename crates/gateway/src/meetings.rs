//! `/api/meetings…` routes and the meeting views under `/api/users/{id}/…`:
//! validate, authorise what the token alone decides, call meeting-service,
//! shape the JSON. Rules that need the meeting's data (host only, host or
//! participant) are enforced by meeting-service, which gets the caller's id.

mod access;
pub mod dto;
pub mod input;
mod lists;
mod media;
mod participants;

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::id as ids;
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

pub use self::access::{access, in_live_meeting};
pub use self::lists::*;
pub use self::media::*;
pub use self::participants::*;

use self::dto::{Deleted, Meeting, MeetingDetails};
use self::input::{CreateMeetingBody, UpdateMeetingBody, create_request, update_request};
use crate::auth::Principal;
use crate::coalesce::{Coalescer, ReadKey};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::request_id::RequestId;
use crate::route::resource;
use crate::{Backends, Success, success};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/meetings").route(web::post().to(create_meeting)))
        // Before `/api/meetings/{id}`, so these names are never read as ids.
        .service(resource("/api/meetings/live").route(web::get().to(live_meetings)))
        .service(resource("/api/meetings/scheduled").route(web::get().to(scheduled_meetings)))
        .service(resource("/api/meetings/join").route(web::post().to(join_meeting)))
        .service(
            resource("/api/meetings/{id}")
                .route(web::get().to(get_meeting))
                .route(web::patch().to(update_meeting))
                .route(web::delete().to(delete_meeting)),
        )
        .service(resource("/api/meetings/{id}/start").route(web::post().to(start_meeting)))
        .service(resource("/api/meetings/{id}/end").route(web::post().to(end_meeting)))
        .service(resource("/api/meetings/{id}/leave").route(web::post().to(leave_meeting)))
        .service(resource("/api/meetings/{id}/media-token").route(web::post().to(media_token)))
        .service(
            resource("/api/meetings/{id}/participants").route(web::get().to(list_participants)),
        )
        .service(
            resource("/api/meetings/{id}/participants/count")
                .route(web::get().to(count_participants)),
        )
        .service(resource("/api/users/{id}/meetings").route(web::get().to(user_meetings)))
        .service(
            resource("/api/users/{id}/participations").route(web::get().to(user_participations)),
        )
        .service(resource("/api/users/{id}/stats").route(web::get().to(user_stats)));
}

/// Meeting routes act as a user: the token's subject must be a user id
/// (an admin token is not a host or participant of anything).
pub(crate) fn caller(principal: &Principal) -> Result<Uuid, ApiError> {
    principal
        .user_id
        .ok_or_else(|| ApiError::forbidden("meeting routes need a user token"))
}

/// Create a meeting; the caller is its host. A `LIVE` meeting starts at once
/// with its host in it.
#[utoipa::path(
    post,
    path = "/api/meetings",
    tag = "meetings",
    request_body = CreateMeetingBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Success<Meeting>),
        (status = 400, description = "Invalid input (the message names the field)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a registered user's token", body = ErrorBody),
    )
)]
pub async fn create_meeting(
    principal: Principal,
    rid: RequestId,
    key: IdempotencyKey,
    backends: web::Data<Backends>,
    body: web::Json<CreateMeetingBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&principal)?;
    let message = create_request(caller, body.into_inner())?;
    let mut request = backends.request(message, &rid);
    key.attach(&mut request);
    let meeting = backends
        .meetings()
        .create_meeting(request)
        .await?
        .into_inner();
    Ok(success(StatusCode::CREATED, Meeting::try_from(meeting)?))
}

/// A meeting with its host and counts (host or participant). `inviteCode`
/// is present for the host only.
#[utoipa::path(
    get,
    path = "/api/meetings/{id}",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The meeting", body = Success<MeetingDetails>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token (an admin token is nobody's host or participant)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant: one answer, so ids cannot be probed", body = ErrorBody),
    )
)]
pub async fn get_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    reads: web::Data<Coalescer>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let caller = caller(&principal)?;
    reads
        .serve(ReadKey::Meeting { caller, id }, || async {
            let message = pb::GetMeetingRequest {
                caller_id: caller.to_string(),
                id: id.to_string(),
            };
            // The count is asked beside the access-checked read and shown
            // only if that read succeeds.
            let mut meetings = backends.meetings();
            let (details, chat_messages) = tokio::join!(
                meetings.get_meeting(backends.request(message, &rid)),
                crate::chats::message_count(&backends, &rid, id),
            );
            let mut details = details?.into_inner();
            details.chat_message_count = chat_messages;
            MeetingDetails::try_from(details)
        })
        .await
}

/// Change a meeting (host only).
#[utoipa::path(
    patch,
    path = "/api/meetings/{id}",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    request_body = UpdateMeetingBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated meeting", body = Success<Meeting>),
        (status = 400, description = "Invalid input or nothing to update", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "A participant, not the host (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller has never been in it: one answer, so ids cannot be probed", body = ErrorBody),
        (status = 409, description = "Status cannot move that way, or not SCHEDULED any more", body = ErrorBody),
    )
)]
pub async fn update_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    body: web::Json<UpdateMeetingBody>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = update_request(caller(&principal)?, id, body.into_inner())?;
    let meeting = backends
        .meetings()
        .update_meeting(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, Meeting::try_from(meeting)?))
}

/// Delete a meeting (host only), with its participants; its chats and
/// recording are deleted in their services.
#[utoipa::path(
    delete,
    path = "/api/meetings/{id}",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = Success<Deleted>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "A participant, not the host (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller has never been in it: one answer, so ids cannot be probed", body = ErrorBody),
    )
)]
pub async fn delete_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = pb::DeleteMeetingRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let deleted = backends
        .meetings()
        .delete_meeting(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, Deleted { id: deleted.id }))
}

async fn status_action(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    start: bool,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let message = pb::MeetingActionRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let mut client = backends.meetings();
    let request = backends.request(message, &rid);
    let meeting = if start {
        client.start_meeting(request).await
    } else {
        client.end_meeting(request).await
    }?
    .into_inner();
    Ok(success(StatusCode::OK, Meeting::try_from(meeting)?))
}

/// Start a SCHEDULED meeting (host only); the host joins it.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/start",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The LIVE meeting", body = Success<Meeting>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "A participant, not the host (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller has never been in it: one answer, so ids cannot be probed", body = ErrorBody),
        (status = 409, description = "Not SCHEDULED (the message names the status)", body = ErrorBody),
    )
)]
pub async fn start_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    status_action(principal, rid, backends, id, true).await
}

/// End a LIVE meeting (host only); everyone still in it is marked as left.
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/end",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ENDED meeting", body = Success<Meeting>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "A participant, not the host (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller has never been in it: one answer, so ids cannot be probed", body = ErrorBody),
        (status = 409, description = "Not LIVE (the message names the status)", body = ErrorBody),
    )
)]
pub async fn end_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    status_action(principal, rid, backends, id, false).await
}
