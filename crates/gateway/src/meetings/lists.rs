//! Lists: the live and scheduled meetings any user may see, and a user's
//! own hosted meetings, participations and stats.

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::id as ids;
use huddle_proto::meeting::v1 as pb;

use super::dto::{self, LiveMeeting, Meeting, MeetingStats, Participation, ScheduledMeeting};
use crate::auth::Principal;
use crate::coalesce::{Coalescer, ReadKey};
use crate::error::{ApiError, ErrorBody};
use crate::request_id::RequestId;
use crate::{Backends, Success, success};

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
    reads: web::Data<Coalescer>,
) -> Result<HttpResponse, ApiError> {
    reads
        .serve(ReadKey::Live, || async {
            let list = backends
                .meetings()
                .list_live_meetings(backends.request(pb::ListLiveMeetingsRequest {}, &rid))
                .await?
                .into_inner();
            dto::all::<_, LiveMeeting>(list.meetings)
        })
        .await
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
    let id = ids::parse("id", &id)?;
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
    let id = ids::parse("id", &id)?;
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
    let id = ids::parse("id", &id)?;
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
