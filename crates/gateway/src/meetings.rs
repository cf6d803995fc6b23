//! `/api/meetings…` routes and the meeting views under `/api/users/{id}/…`:
//! validate, authorise what the token alone decides, call meeting-service,
//! shape the JSON. Rules that need the meeting's data (host only, host or
//! participant) are enforced by meeting-service, which gets the caller's id.

pub mod dto;
pub mod input;

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use self::dto::{
    ActiveCount, Deleted, JoinResult, LiveMeeting, Meeting, MeetingDetails, MeetingStats,
    Participant, ParticipantWithUser, Participation, ScheduledMeeting,
};
use self::input::{CreateMeetingBody, JoinMeetingBody, StatusInput, UpdateMeetingBody};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::request_id::RequestId;
use crate::{Backends, Success, success, validate};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/meetings").route(web::post().to(create_meeting)))
        // Before `/api/meetings/{id}`, so these names are never read as ids.
        .service(web::resource("/api/meetings/live").route(web::get().to(live_meetings)))
        .service(web::resource("/api/meetings/scheduled").route(web::get().to(scheduled_meetings)))
        .service(web::resource("/api/meetings/join").route(web::post().to(join_meeting)))
        .service(
            web::resource("/api/meetings/{id}")
                .route(web::get().to(get_meeting))
                .route(web::patch().to(update_meeting))
                .route(web::delete().to(delete_meeting)),
        )
        .service(web::resource("/api/meetings/{id}/start").route(web::post().to(start_meeting)))
        .service(web::resource("/api/meetings/{id}/end").route(web::post().to(end_meeting)))
        .service(web::resource("/api/meetings/{id}/leave").route(web::post().to(leave_meeting)))
        .service(
            web::resource("/api/meetings/{id}/participants")
                .route(web::get().to(list_participants)),
        )
        .service(
            web::resource("/api/meetings/{id}/participants/count")
                .route(web::get().to(count_participants)),
        )
        .service(web::resource("/api/users/{id}/meetings").route(web::get().to(user_meetings)))
        .service(
            web::resource("/api/users/{id}/participations")
                .route(web::get().to(user_participations)),
        )
        .service(web::resource("/api/users/{id}/stats").route(web::get().to(user_stats)));
}

/// Meeting routes act as a user: the token's subject must be a user id
/// (an admin token is not a host or participant of anything).
fn caller(principal: &Principal) -> Result<Uuid, ApiError> {
    principal
        .user_id
        .ok_or_else(|| ApiError::forbidden("meeting routes need a user token"))
}

fn status_pb(status: StatusInput) -> i32 {
    match status {
        StatusInput::Scheduled => pb::MeetingStatus::Scheduled,
        StatusInput::Live => pb::MeetingStatus::Live,
        StatusInput::Ended => pb::MeetingStatus::Ended,
    }
    .into()
}

fn create_request(
    caller: Uuid,
    body: CreateMeetingBody,
) -> Result<pb::CreateMeetingRequest, ApiError> {
    let title = input::title(input::required("title", body.title.as_ref())?)?;
    let description = match &body.description {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => input::description(v)?,
    };
    // Absent means SCHEDULED; `null` is not a status (the document says so).
    let status = input::not_null("status", &body.status)?
        .map(input::status)
        .transpose()?
        .unwrap_or(StatusInput::Scheduled);
    if status == StatusInput::Ended {
        return Err(ApiError::invalid(
            "status",
            "a new meeting is SCHEDULED or LIVE",
        ));
    }
    let scheduled_at = match &body.scheduled_at {
        None | Some(serde_json::Value::Null) if status == StatusInput::Live => None,
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::invalid(
                "scheduledAt",
                "is required for a SCHEDULED meeting",
            ));
        }
        Some(v) => Some(input::timestamp_pb(input::future_timestamp(
            "scheduledAt",
            v,
        )?)),
    };
    Ok(pb::CreateMeetingRequest {
        caller_id: caller.to_string(),
        title,
        description,
        scheduled_at,
        status: status_pb(status),
    })
}

fn update_request(
    caller: Uuid,
    id: Uuid,
    body: UpdateMeetingBody,
) -> Result<pb::UpdateMeetingRequest, ApiError> {
    let title = input::not_null("title", &body.title)?
        .map(input::title)
        .transpose()?;
    let (description, clear_description) = match &body.description {
        None => (None, false),
        Some(None) => (None, true),
        Some(Some(v)) => match input::description(v)? {
            Some(text) => (Some(text), false),
            // An empty description removes it.
            None => (None, true),
        },
    };
    let scheduled_at = input::not_null("scheduledAt", &body.scheduled_at)?
        .map(|v| input::future_timestamp("scheduledAt", v).map(input::timestamp_pb))
        .transpose()?;
    let status = input::not_null("status", &body.status)?
        .map(input::status)
        .transpose()?;
    let rotate_invite_code = input::not_null("rotateInviteCode", &body.rotate_invite_code)?
        .map(|v| input::boolean("rotateInviteCode", v))
        .transpose()?
        .unwrap_or(false);
    if title.is_none()
        && description.is_none()
        && !clear_description
        && scheduled_at.is_none()
        && status.is_none()
        && !rotate_invite_code
    {
        return Err(ApiError::bad_request("nothing to update"));
    }
    Ok(pb::UpdateMeetingRequest {
        caller_id: caller.to_string(),
        id: id.to_string(),
        title,
        description,
        clear_description,
        scheduled_at,
        status: status.map_or(pb::MeetingStatus::Unspecified.into(), status_pb),
        rotate_invite_code,
    })
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
    backends: web::Data<Backends>,
    body: web::Json<CreateMeetingBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&principal)?;
    let message = create_request(caller, body.into_inner())?;
    let meeting = backends
        .meetings()
        .create_meeting(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::CREATED, Meeting::try_from(meeting)?))
}

/// A meeting with its host and counts (host or participant).
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
        (status = 403, description = "Neither host nor participant", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
    )
)]
pub async fn get_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
    let message = pb::GetMeetingRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let details = backends
        .meetings()
        .get_meeting(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, MeetingDetails::try_from(details)?))
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
        (status = 403, description = "Not the host", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
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
    let id = validate::id("id", &id)?;
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
        (status = 403, description = "Not the host", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
    )
)]
pub async fn delete_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
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
    let id = validate::id("id", &id)?;
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
        (status = 403, description = "Not the host", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
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
        (status = 403, description = "Not the host", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
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
    let joined = backends
        .meetings()
        .join_meeting(backends.request(message, &rid))
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
        (status = 403, description = "Never joined", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
    )
)]
pub async fn leave_meeting(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
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

/// The 20 LIVE meetings that started last, newest first.
#[utoipa::path(
    get,
    path = "/api/meetings/live",
    tag = "meetings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "LIVE meetings", body = Success<Vec<LiveMeeting>>),
        (status = 401, description = "No or invalid token", body = ErrorBody),
    )
)]
pub async fn live_meetings(
    _principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
) -> Result<HttpResponse, ApiError> {
    let list = backends
        .meetings()
        .list_live_meetings(backends.request(pb::ListLiveMeetingsRequest {}, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        dto::all::<_, LiveMeeting>(list.meetings)?,
    ))
}

/// The 20 SCHEDULED meetings that come soonest (overdue ones first).
#[utoipa::path(
    get,
    path = "/api/meetings/scheduled",
    tag = "meetings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "SCHEDULED meetings", body = Success<Vec<ScheduledMeeting>>),
        (status = 401, description = "No or invalid token", body = ErrorBody),
    )
)]
pub async fn scheduled_meetings(
    _principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
) -> Result<HttpResponse, ApiError> {
    let list = backends
        .meetings()
        .list_scheduled_meetings(backends.request(pb::ListScheduledMeetingsRequest {}, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        dto::all::<_, ScheduledMeeting>(list.meetings)?,
    ))
}

/// Everyone who joined, oldest join first (host or participant).
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/participants",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Participants", body = Success<Vec<ParticipantWithUser>>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Neither host nor participant", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
    )
)]
pub async fn list_participants(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
    let message = pb::ListParticipantsRequest {
        caller_id: caller(&principal)?.to_string(),
        id: id.to_string(),
    };
    let list = backends
        .meetings()
        .list_participants(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        dto::all::<_, ParticipantWithUser>(list.participants)?,
    ))
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
        (status = 403, description = "Neither host nor participant", body = ErrorBody),
        (status = 404, description = "No such meeting", body = ErrorBody),
    )
)]
pub async fn count_participants(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
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

/// The 50 meetings the user created last (self only).
#[utoipa::path(
    get,
    path = "/api/users/{id}/meetings",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "User id; must be the caller's own")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hosted meetings, newest first", body = Success<Vec<Meeting>>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the caller's own", body = ErrorBody),
    )
)]
pub async fn user_meetings(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
    principal.require_self(id)?;
    let message = pb::ListUserMeetingsRequest {
        user_id: id.to_string(),
    };
    let list = backends
        .meetings()
        .list_user_meetings(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        dto::all::<_, Meeting>(list.meetings)?,
    ))
}

/// The user's 50 latest joins, each with its meeting (self only).
#[utoipa::path(
    get,
    path = "/api/users/{id}/participations",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "User id; must be the caller's own")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Participations, newest first", body = Success<Vec<Participation>>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the caller's own", body = ErrorBody),
    )
)]
pub async fn user_participations(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
    principal.require_self(id)?;
    let message = pb::ListUserParticipationsRequest {
        user_id: id.to_string(),
    };
    let list = backends
        .meetings()
        .list_user_participations(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        dto::all::<_, Participation>(list.participations)?,
    ))
}

/// How many meetings the user hosts, by status (self only).
#[utoipa::path(
    get,
    path = "/api/users/{id}/stats",
    tag = "meetings",
    params(("id" = Uuid, Path, description = "User id; must be the caller's own")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hosted meetings by status", body = Success<MeetingStats>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the caller's own", body = ErrorBody),
    )
)]
pub async fn user_stats(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validate::id("id", &id)?;
    principal.require_self(id)?;
    let message = pb::GetUserMeetingStatsRequest {
        user_id: id.to_string(),
    };
    let stats = backends
        .meetings()
        .get_user_meeting_stats(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        MeetingStats {
            total: stats.total,
            live: stats.live,
            scheduled: stats.scheduled,
            ended: stats.ended,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: serde_json::Value) -> Result<pb::CreateMeetingRequest, ApiError> {
        create_request(Uuid::nil(), serde_json::from_value(body).unwrap())
    }

    fn update(body: serde_json::Value) -> Result<pb::UpdateMeetingRequest, ApiError> {
        update_request(
            Uuid::nil(),
            Uuid::nil(),
            serde_json::from_value(body).unwrap(),
        )
    }

    #[test]
    fn create_needs_a_time_unless_live() {
        let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let req = create(json!({"title": " Sync ", "scheduledAt": later})).unwrap();
        assert_eq!(req.title, "Sync");
        assert_eq!(req.status, i32::from(pb::MeetingStatus::Scheduled));
        assert!(req.scheduled_at.is_some());
        let req = create(json!({"title": "Now", "status": "LIVE"})).unwrap();
        assert!(req.scheduled_at.is_none());
        assert_eq!(
            create(json!({"title": "x"})).unwrap_err().message,
            "scheduledAt: is required for a SCHEDULED meeting"
        );
        assert_eq!(
            create(json!({"title": "x", "status": "ENDED"}))
                .unwrap_err()
                .message,
            "status: a new meeting is SCHEDULED or LIVE"
        );
        assert_eq!(
            create(json!({"status": "LIVE"})).unwrap_err().message,
            "title: is required"
        );
    }

    #[test]
    fn patch_reads_every_field_and_refuses_empty() {
        let req = update(json!({"description": null, "status": "LIVE"})).unwrap();
        assert!(req.clear_description);
        assert_eq!(req.status, i32::from(pb::MeetingStatus::Live));
        let req = update(json!({"rotateInviteCode": true})).unwrap();
        assert!(req.rotate_invite_code);
        assert_eq!(update(json!({})).unwrap_err().message, "nothing to update");
        assert_eq!(
            update(json!({"rotateInviteCode": false}))
                .unwrap_err()
                .message,
            "nothing to update"
        );
        assert_eq!(
            update(json!({"rotateInviteCode": "yes"}))
                .unwrap_err()
                .message,
            "rotateInviteCode: must be true or false"
        );
        assert_eq!(
            update(json!({"title": null})).unwrap_err().message,
            "title: must not be null"
        );
    }
}
