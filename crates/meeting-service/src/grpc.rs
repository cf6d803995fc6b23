//! The tonic implementation of `huddle.meeting.v1.MeetingService`: validate,
//! read through the cache, write in a transaction that records its cache
//! invalidation (outbox), then apply it after the commit.

use std::sync::{Arc, atomic::Ordering};

use cache_core::Invalidation;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use huddle_db::DbError;
use huddle_proto::meeting::v1::{self as pb, meeting_service_server::MeetingService};
use huddle_serve::{Failpoints, Outbox, Recorded};
use tonic::{Request, Response, Status as GrpcStatus};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    cache::{self, Participants, Sources},
    cascade::Cascade,
    db::{self, MeetingChanges, MeetingRow, NewMeeting, ParticipantRow, Status},
    error::MeetingError,
    invite,
    users::{RequestCtx, UserCard},
    validate,
};

/// Fresh invite codes tried before giving up on a (72-bit) collision streak.
const CODE_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct MeetingApi {
    pub(crate) src: Sources,
    pub(crate) outbox: Outbox,
    pub(crate) cascade: Cascade,
    pub(crate) failpoints: Arc<Failpoints>,
}

type Reply<T> = Result<Response<T>, GrpcStatus>;

impl MeetingApi {
    pub fn new(
        src: Sources,
        outbox: Outbox,
        cascade: Cascade,
        failpoints: Arc<Failpoints>,
    ) -> Self {
        Self {
            src,
            outbox,
            cascade,
            failpoints,
        }
    }

    /// Commit first, then invalidate (never the reverse, or a reader could
    /// refill the old row between the two). The invalidation was recorded in
    /// the transaction, so if applying it fails here the relay retries it.
    async fn after_commit(&self, recorded: Option<Recorded>) -> Result<(), MeetingError> {
        if self.failpoints.crash_after_commit.load(Ordering::SeqCst) {
            return Err(MeetingError::Failpoint("crash after commit"));
        }
        if let Some(recorded) = recorded {
            self.outbox.apply(recorded).await;
        }
        Ok(())
    }

    /// The meeting's participant list, if `caller` may see the meeting:
    /// host or participant (anyone with a participant row, present or past).
    /// Checked against the cached list, which every join and leave
    /// invalidates, so a hit needs no query.
    async fn readable_participants(
        &self,
        ctx: &RequestCtx,
        id: Uuid,
        caller: Uuid,
    ) -> Result<Participants, MeetingError> {
        let participants = cache::participants(&self.src, ctx, id)
            .await?
            .ok_or(MeetingError::NotFound)?;
        if participants.admits(caller) {
            Ok(participants)
        } else {
            Err(MeetingError::PermissionDenied(
                "only the host or a participant may see this meeting",
            ))
        }
    }

    async fn require_user(&self, ctx: &RequestCtx, caller: Uuid) -> Result<(), MeetingError> {
        if self.src.users.exists(ctx, caller).await? {
            Ok(())
        } else {
            Err(MeetingError::PermissionDenied(
                "the caller is not a registered user",
            ))
        }
    }

    /// Runs `edit` on the host's locked meeting row, then records what it
    /// changed; shared by update, start and end.
    async fn edit_meeting(
        &self,
        id: Uuid,
        caller: Uuid,
        edit: &Edit,
    ) -> Result<MeetingRow, MeetingError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut conn = self.src.db.conn().await?;
            let result = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    let before = db::lock_meeting(conn, id)
                        .await?
                        .ok_or(MeetingError::NotFound)?;
                    if before.host_id != caller {
                        return Err(MeetingError::PermissionDenied(
                            "only the host may change this meeting",
                        ));
                    }
                    let applied = edit.apply(conn, &before).await?;
                    let recorded = Outbox::record(conn, applied.invalidation).await?;
                    Ok((applied.row, recorded))
                })
                .await;
            drop(conn);
            match result {
                Err(MeetingError::Db(DbError::Unique { constraint }))
                    if constraint == db::INVITE_CODE_CONSTRAINT && attempts < CODE_ATTEMPTS => {}
                Err(e) => return Err(e),
                Ok((row, recorded)) => {
                    self.after_commit(Some(recorded)).await?;
                    return Ok(row);
                }
            }
        }
    }
}

/// A change to an existing meeting, by its host.
#[derive(Debug, Default)]
struct Edit {
    fields: MeetingChanges,
    rotate_invite_code: bool,
    /// Target status; anything but one step forward is a conflict.
    status: Option<Status>,
    /// The current status as target is a conflict too (start, end) rather
    /// than a no-op (PATCH, which may restate it).
    transition_required: bool,
}

struct Applied {
    row: MeetingRow,
    invalidation: Invalidation,
}

impl Edit {
    fn is_empty(&self) -> bool {
        self.fields.is_empty() && !self.rotate_invite_code && self.status.is_none()
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        before: &MeetingRow,
    ) -> Result<Applied, MeetingError> {
        if self.fields.scheduled_at.is_some() && before.status != Status::Scheduled {
            return Err(MeetingError::Conflict(format!(
                "meeting is {}; only a SCHEDULED meeting can be rescheduled",
                before.status
            )));
        }
        let status = self
            .status
            .filter(|s| *s != before.status || self.transition_required);
        if let Some(target) = status
            && before.status.next() != Some(target)
        {
            return Err(MeetingError::Conflict(transition_refused(
                before.status,
                target,
            )));
        }

        let mut fields = self.fields.clone();
        if self.rotate_invite_code {
            fields.invite_code = Some(invite::generate());
        }
        let mut row = if fields.is_empty() {
            before.clone()
        } else {
            db::update_fields(conn, before.id, &fields).await?
        };

        // Participants whose rows this write changed (host joining on start,
        // everyone leaving on end).
        let mut moved: Vec<Uuid> = Vec::new();
        if let Some(target) = status {
            row = db::set_status(conn, before.id, target).await?;
            match target {
                Status::Live => {
                    if db::find_active_participant(conn, row.id, row.host_id)
                        .await?
                        .is_none()
                    {
                        db::insert_participant(conn, Uuid::new_v4(), row.id, row.host_id).await?;
                        moved.push(row.host_id);
                    }
                }
                Status::Ended => moved = db::leave_all(conn, row.id).await?,
                Status::Scheduled => {}
            }
        }

        let codes: Vec<&str> = if row.invite_code == before.invite_code {
            vec![before.invite_code.as_str()]
        } else {
            vec![before.invite_code.as_str(), row.invite_code.as_str()]
        };
        let participants = db::participant_user_ids(conn, row.id).await?;
        let mut invalidation = Invalidation::meeting_update(
            row.id,
            row.host_id,
            &codes,
            status.is_some(),
            &participants,
        );
        for user in moved {
            invalidation = invalidation.merge(Invalidation::participant_join_leave(row.id, user));
        }
        Ok(Applied { row, invalidation })
    }
}

fn transition_refused(current: Status, target: Status) -> String {
    let verb = match target {
        Status::Live => "started",
        Status::Ended => "ended",
        Status::Scheduled => "made SCHEDULED again",
    };
    let needed = match target {
        Status::Live => "only a SCHEDULED meeting can be started",
        Status::Ended => "only a LIVE meeting can be ended",
        Status::Scheduled => "status only moves forward",
    };
    format!("meeting is {current} and cannot be {verb}: {needed}")
}

#[tonic::async_trait]
impl MeetingService for MeetingApi {
    async fn create_meeting(&self, req: Request<pb::CreateMeetingRequest>) -> Reply<pb::Meeting> {
        let (ctx, span) = request_ctx(&req, "CreateMeeting");
        let req = req.into_inner();
        async {
            let caller = validate::id("callerId", &req.caller_id)?;
            let title = validate::title(&req.title)?;
            let description = req
                .description
                .as_deref()
                .map(validate::description)
                .transpose()?
                .flatten();
            let live = match proto_status(req.status)? {
                None | Some(Status::Scheduled) => false,
                Some(Status::Live) => true,
                Some(Status::Ended) => {
                    return Err(MeetingError::InvalidArgument(
                        "status: a new meeting is SCHEDULED or LIVE".to_owned(),
                    ));
                }
            };
            let scheduled_at = match &req.scheduled_at {
                Some(ts) => {
                    validate::not_in_past("scheduledAt", validate::timestamp("scheduledAt", ts)?)?
                }
                None if live => Utc::now(),
                None => {
                    return Err(MeetingError::InvalidArgument(
                        "scheduledAt: required for a SCHEDULED meeting".to_owned(),
                    ));
                }
            };
            self.require_user(&ctx, caller).await?;

            let id = Uuid::new_v4();
            let mut attempts = 0;
            let (row, recorded) = loop {
                attempts += 1;
                let code = invite::generate();
                let new = NewMeeting {
                    id,
                    title: &title,
                    description: description.as_deref(),
                    host_id: caller,
                    invite_code: &code,
                    scheduled_at,
                };
                let mut conn = self.src.db.conn().await?;
                let result = conn
                    .transaction::<_, MeetingError, _>(async |conn| {
                        let row = db::insert_meeting(conn, &new, live).await?;
                        let mut invalidation =
                            Invalidation::meeting_create(caller, &row.invite_code, live);
                        if live {
                            // An instant meeting starts with its host in it.
                            db::insert_participant(conn, Uuid::new_v4(), id, caller).await?;
                            invalidation = invalidation
                                .merge(Invalidation::participant_join_leave(id, caller));
                        }
                        Ok((row, Outbox::record(conn, invalidation).await?))
                    })
                    .await;
                match result {
                    Err(MeetingError::Db(DbError::Unique { constraint }))
                        if constraint == db::INVITE_CODE_CONSTRAINT && attempts < CODE_ATTEMPTS => {
                    }
                    other => break other?,
                }
            };
            self.after_commit(Some(recorded)).await?;
            Ok(Response::new(meeting_pb(&row)))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn get_meeting(&self, req: Request<pb::GetMeetingRequest>) -> Reply<pb::MeetingDetails> {
        let (ctx, span) = request_ctx(&req, "GetMeeting");
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            let meeting = cache::meeting(&self.src, &ctx, id)
                .await?
                .ok_or(MeetingError::NotFound)?;
            // The host needs no membership lookup.
            let (authorized, count) = tokio::join!(
                async {
                    if meeting.meeting.host_id == caller {
                        Ok(())
                    } else {
                        self.readable_participants(&ctx, id, caller).await.map(drop)
                    }
                },
                cache::active_participant_count(&self.src, id),
            );
            authorized?;
            Ok(Response::new(pb::MeetingDetails {
                meeting: Some(meeting_pb(&meeting.meeting)),
                host: meeting.host.as_ref().map(user_pb),
                participant_count: unsigned(count?),
                // Joins this answer when chat-service exists: ask it for the
                // count (cached under its own key) here, beside the
                // participant count. Unknown until then, never a made-up 0.
                chat_message_count: None,
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn update_meeting(&self, req: Request<pb::UpdateMeetingRequest>) -> Reply<pb::Meeting> {
        let (_, span) = request_ctx(&req, "UpdateMeeting");
        let req = req.into_inner();
        async {
            let caller = validate::id("callerId", &req.caller_id)?;
            let id = validate::id("id", &req.id)?;
            let description = if req.clear_description {
                Some(None)
            } else {
                req.description
                    .as_deref()
                    .map(validate::description)
                    .transpose()?
            };
            let scheduled_at = req
                .scheduled_at
                .as_ref()
                .map(|ts| {
                    validate::timestamp("scheduledAt", ts)
                        .and_then(|t| validate::not_in_past("scheduledAt", t))
                })
                .transpose()?;
            let edit = Edit {
                fields: MeetingChanges {
                    title: req.title.as_deref().map(validate::title).transpose()?,
                    description,
                    scheduled_at,
                    invite_code: None,
                },
                rotate_invite_code: req.rotate_invite_code,
                status: proto_status(req.status)?,
                transition_required: false,
            };
            if edit.is_empty() {
                return Err(MeetingError::InvalidArgument(
                    "nothing to update".to_owned(),
                ));
            }
            let row = self.edit_meeting(id, caller, &edit).await?;
            Ok(Response::new(meeting_pb(&row)))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn delete_meeting(
        &self,
        req: Request<pb::DeleteMeetingRequest>,
    ) -> Reply<pb::DeleteMeetingResponse> {
        let (_, span) = request_ctx(&req, "DeleteMeeting");
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            let mut conn = self.src.db.conn().await?;
            let recorded = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    let meeting = db::lock_meeting(conn, id)
                        .await?
                        .ok_or(MeetingError::NotFound)?;
                    if meeting.host_id != caller {
                        return Err(MeetingError::PermissionDenied(
                            "only the host may delete this meeting",
                        ));
                    }
                    let participants = db::participant_user_ids(conn, id).await?;
                    db::delete_meeting(conn, id).await?;
                    // Chats and the recording live in other services: the
                    // durable record makes sure they go too.
                    Cascade::record(conn, id).await?;
                    let invalidation = Invalidation::meeting_delete(
                        id,
                        meeting.host_id,
                        &meeting.invite_code,
                        &participants,
                    );
                    Ok(Outbox::record(conn, invalidation).await?)
                })
                .await?;
            drop(conn);
            self.cascade.wake();
            self.after_commit(Some(recorded)).await?;
            Ok(Response::new(pb::DeleteMeetingResponse {
                id: id.to_string(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn start_meeting(&self, req: Request<pb::MeetingActionRequest>) -> Reply<pb::Meeting> {
        self.status_action(req, "StartMeeting", Status::Live).await
    }

    async fn end_meeting(&self, req: Request<pb::MeetingActionRequest>) -> Reply<pb::Meeting> {
        self.status_action(req, "EndMeeting", Status::Ended).await
    }

    async fn join_meeting(
        &self,
        req: Request<pb::JoinMeetingRequest>,
    ) -> Reply<pb::JoinMeetingResponse> {
        let (ctx, span) = request_ctx(&req, "JoinMeeting");
        async {
            // A malformed code is refused before any Redis or Postgres call.
            let code = validate::invite_code(&req.get_ref().invite_code)?;
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let preview = cache::meeting_by_invite_code(&self.src, &ctx, code)
                .await?
                .ok_or(MeetingError::InvalidInviteCode)?;
            if preview.status == Status::Ended {
                return Err(ended_conflict());
            }
            self.require_user(&ctx, caller).await?;

            let mut conn = self.src.db.conn().await?;
            let (meeting, participant, recorded) = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    // The row is authoritative: the code may have been
                    // rotated or the meeting ended since the cached lookup.
                    let meeting = db::lock_meeting(conn, preview.id)
                        .await?
                        .filter(|m| m.invite_code == code)
                        .ok_or(MeetingError::InvalidInviteCode)?;
                    if meeting.status == Status::Ended {
                        return Err(ended_conflict());
                    }
                    if let Some(active) =
                        db::find_active_participant(conn, meeting.id, caller).await?
                    {
                        return Ok((meeting, active, None));
                    }
                    let joined =
                        db::insert_participant(conn, Uuid::new_v4(), meeting.id, caller).await?;
                    let invalidation = Invalidation::participant_join_leave(meeting.id, caller);
                    let recorded = Outbox::record(conn, invalidation).await?;
                    Ok((meeting, joined, Some(recorded)))
                })
                .await?;
            drop(conn);
            let joined_now = recorded.is_some();
            self.after_commit(recorded).await?;
            Ok(Response::new(pb::JoinMeetingResponse {
                meeting: Some(pb::MeetingPreview {
                    id: meeting.id.to_string(),
                    title: meeting.title,
                    status: status_pb(meeting.status),
                    scheduled_at: Some(ts(meeting.scheduled_at)),
                    host: preview.host.as_ref().map(user_pb),
                }),
                participant: Some(participant_pb(&participant)),
                joined_now,
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn leave_meeting(&self, req: Request<pb::LeaveMeetingRequest>) -> Reply<pb::Participant> {
        let (_, span) = request_ctx(&req, "LeaveMeeting");
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            let mut conn = self.src.db.conn().await?;
            let (participant, recorded) = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    db::lock_meeting(conn, id)
                        .await?
                        .ok_or(MeetingError::NotFound)?;
                    if let Some(left) = db::leave(conn, id, caller).await? {
                        let invalidation = Invalidation::participant_join_leave(id, caller);
                        return Ok((left, Some(Outbox::record(conn, invalidation).await?)));
                    }
                    // Already left (or the meeting ended): nothing changes.
                    let last = db::last_participation(conn, id, caller).await?.ok_or(
                        MeetingError::PermissionDenied("only a participant may leave this meeting"),
                    )?;
                    Ok((last, None))
                })
                .await?;
            drop(conn);
            self.after_commit(recorded).await?;
            Ok(Response::new(participant_pb(&participant)))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_live_meetings(
        &self,
        req: Request<pb::ListLiveMeetingsRequest>,
    ) -> Reply<pb::ListLiveMeetingsResponse> {
        let (ctx, span) = request_ctx(&req, "ListLiveMeetings");
        async {
            let items = cache::live_meetings(&self.src, &ctx).await?;
            Ok(Response::new(pb::ListLiveMeetingsResponse {
                meetings: items
                    .into_iter()
                    .map(|m| pb::LiveMeeting {
                        id: m.id.to_string(),
                        title: m.title,
                        scheduled_at: Some(ts(m.scheduled_at)),
                        started_at: m.started_at.map(ts),
                        host: m.host.as_ref().map(user_pb),
                        participant_count: unsigned(m.participants),
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_scheduled_meetings(
        &self,
        req: Request<pb::ListScheduledMeetingsRequest>,
    ) -> Reply<pb::ListScheduledMeetingsResponse> {
        let (ctx, span) = request_ctx(&req, "ListScheduledMeetings");
        async {
            let items = cache::scheduled_meetings(&self.src, &ctx).await?;
            Ok(Response::new(pb::ListScheduledMeetingsResponse {
                meetings: items
                    .into_iter()
                    .map(|m| pb::ScheduledMeeting {
                        id: m.id.to_string(),
                        title: m.title,
                        description: m.description,
                        scheduled_at: Some(ts(m.scheduled_at)),
                        host: m.host.as_ref().map(user_pb),
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_participants(
        &self,
        req: Request<pb::ListParticipantsRequest>,
    ) -> Reply<pb::ListParticipantsResponse> {
        let (ctx, span) = request_ctx(&req, "ListParticipants");
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            let participants = self.readable_participants(&ctx, id, caller).await?;
            Ok(Response::new(pb::ListParticipantsResponse {
                participants: participants
                    .items
                    .iter()
                    .map(|p| pb::ParticipantWithUser {
                        participant: Some(participant_pb(&p.participant)),
                        user: p.user.as_ref().map(user_pb),
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn count_active_participants(
        &self,
        req: Request<pb::CountActiveParticipantsRequest>,
    ) -> Reply<pb::CountActiveParticipantsResponse> {
        let (ctx, span) = request_ctx(&req, "CountActiveParticipants");
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            self.readable_participants(&ctx, id, caller).await?;
            let count = cache::active_participant_count(&self.src, id).await?;
            Ok(Response::new(pb::CountActiveParticipantsResponse {
                count: unsigned(count),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_user_meetings(
        &self,
        req: Request<pb::ListUserMeetingsRequest>,
    ) -> Reply<pb::ListUserMeetingsResponse> {
        let (_, span) = request_ctx(&req, "ListUserMeetings");
        async {
            let user = validate::id("userId", &req.get_ref().user_id)?;
            let rows = cache::user_meetings(&self.src, user).await?;
            Ok(Response::new(pb::ListUserMeetingsResponse {
                meetings: rows.iter().map(meeting_pb).collect(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_user_participations(
        &self,
        req: Request<pb::ListUserParticipationsRequest>,
    ) -> Reply<pb::ListUserParticipationsResponse> {
        let (ctx, span) = request_ctx(&req, "ListUserParticipations");
        async {
            let user = validate::id("userId", &req.get_ref().user_id)?;
            let items = cache::user_participations(&self.src, &ctx, user).await?;
            Ok(Response::new(pb::ListUserParticipationsResponse {
                participations: items
                    .into_iter()
                    .map(|p| pb::Participation {
                        participant: Some(participant_pb(&p.participant)),
                        meeting: Some(pb::ParticipationMeeting {
                            id: p.meeting.id.to_string(),
                            title: p.meeting.title,
                            status: status_pb(p.meeting.status),
                            scheduled_at: Some(ts(p.meeting.scheduled_at)),
                            started_at: p.meeting.started_at.map(ts),
                            ended_at: p.meeting.ended_at.map(ts),
                            host: p.meeting.host.as_ref().map(user_pb),
                        }),
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn get_user_meeting_stats(
        &self,
        req: Request<pb::GetUserMeetingStatsRequest>,
    ) -> Reply<pb::UserMeetingStats> {
        let (_, span) = request_ctx(&req, "GetUserMeetingStats");
        async {
            let user = validate::id("userId", &req.get_ref().user_id)?;
            let stats = cache::host_stats(&self.src, user).await?;
            Ok(Response::new(pb::UserMeetingStats {
                total: unsigned(stats.total),
                live: unsigned(stats.live),
                scheduled: unsigned(stats.scheduled),
                ended: unsigned(stats.ended),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }
}

impl MeetingApi {
    async fn status_action(
        &self,
        req: Request<pb::MeetingActionRequest>,
        method: &'static str,
        target: Status,
    ) -> Reply<pb::Meeting> {
        let (_, span) = request_ctx(&req, method);
        async {
            let caller = validate::id("callerId", &req.get_ref().caller_id)?;
            let id = validate::id("id", &req.get_ref().id)?;
            let edit = Edit {
                status: Some(target),
                transition_required: true,
                ..Edit::default()
            };
            let row = self.edit_meeting(id, caller, &edit).await?;
            Ok(Response::new(meeting_pb(&row)))
        }
        .instrument(span)
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }
}

fn ended_conflict() -> MeetingError {
    MeetingError::Conflict("meeting is ENDED and cannot be joined".to_owned())
}

fn request_ctx<T>(req: &Request<T>, method: &'static str) -> (RequestCtx, tracing::Span) {
    let ctx = RequestCtx::from_request(req);
    let span = tracing::info_span!(
        "grpc",
        service = "meeting",
        method,
        request_id = ctx.request_id()
    );
    (ctx, span)
}

/// `UNSPECIFIED` is "not given"; an unknown number is bad input.
fn proto_status(raw: i32) -> Result<Option<Status>, MeetingError> {
    match pb::MeetingStatus::try_from(raw) {
        Ok(pb::MeetingStatus::Unspecified) => Ok(None),
        Ok(pb::MeetingStatus::Scheduled) => Ok(Some(Status::Scheduled)),
        Ok(pb::MeetingStatus::Live) => Ok(Some(Status::Live)),
        Ok(pb::MeetingStatus::Ended) => Ok(Some(Status::Ended)),
        Err(_) => Err(MeetingError::InvalidArgument(
            "status: must be one of SCHEDULED, LIVE, ENDED".to_owned(),
        )),
    }
}

fn status_pb(status: Status) -> i32 {
    match status {
        Status::Scheduled => pb::MeetingStatus::Scheduled,
        Status::Live => pb::MeetingStatus::Live,
        Status::Ended => pb::MeetingStatus::Ended,
    }
    .into()
}

fn meeting_pb(m: &MeetingRow) -> pb::Meeting {
    pb::Meeting {
        id: m.id.to_string(),
        title: m.title.clone(),
        description: m.description.clone(),
        status: status_pb(m.status),
        host_id: m.host_id.to_string(),
        invite_code: m.invite_code.clone(),
        scheduled_at: Some(ts(m.scheduled_at)),
        started_at: m.started_at.map(ts),
        ended_at: m.ended_at.map(ts),
        created_at: Some(ts(m.created_at)),
        updated_at: Some(ts(m.updated_at)),
    }
}

fn participant_pb(p: &ParticipantRow) -> pb::Participant {
    pb::Participant {
        id: p.id.to_string(),
        meeting_id: p.meeting_id.to_string(),
        user_id: p.user_id.to_string(),
        joined_at: Some(ts(p.joined_at)),
        left_at: p.left_at.map(ts),
    }
}

fn user_pb(u: &UserCard) -> pb::UserRef {
    pb::UserRef {
        id: u.id.to_string(),
        name: u.name.clone(),
        image: u.image.clone(),
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
