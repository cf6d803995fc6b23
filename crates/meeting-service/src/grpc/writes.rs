//! Create, delete, join and leave: each one transaction that records its
//! cache invalidation (outbox), applied after the commit.

use cache_core::Invalidation;
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use huddle_db::DbError;
use huddle_domain::{id, invite_code, meeting};
use huddle_proto::meeting::v1 as pb;
use huddle_serve::{IdempotencyKey, Outbox, idempotency};
use tonic::Request;
use uuid::Uuid;

use super::{
    CODE_ATTEMPTS, MeetingApi,
    convert::{meeting_pb, participant_pb, preview_pb, user_pb},
    not_host, not_registered,
};
use crate::{
    cache::{self, UserRef},
    cascade::Cascade,
    db::{self, NewMeeting, Status},
    error::MeetingError,
    invite,
    users::RequestCtx,
    validate,
};

/// A create request that passed every rule.
struct Creation {
    host: Uuid,
    title: String,
    description: Option<String>,
    scheduled_at: DateTime<Utc>,
    live: bool,
}

impl Creation {
    fn parse(req: &pb::CreateMeetingRequest) -> Result<Self, MeetingError> {
        let live = match validate::status(req.status)? {
            None | Some(Status::Scheduled) => false,
            Some(Status::Live) => true,
            Some(Status::Ended) => {
                return Err(MeetingError::InvalidArgument(
                    "status: a new meeting is SCHEDULED or LIVE".to_owned(),
                ));
            }
        };
        let scheduled_at = match &req.scheduled_at {
            Some(ts) => validate::scheduled_at(ts)?,
            None if live => Utc::now(),
            None => {
                return Err(MeetingError::InvalidArgument(
                    "scheduledAt: required for a SCHEDULED meeting".to_owned(),
                ));
            }
        };
        Ok(Self {
            host: id::parse("callerId", &req.caller_id)?,
            title: meeting::title(&req.title)?,
            description: req
                .description
                .as_deref()
                .map(meeting::description)
                .transpose()?
                .flatten(),
            scheduled_at,
            live,
        })
    }
}

fn ended_conflict() -> MeetingError {
    MeetingError::Conflict("meeting is ENDED and cannot be joined".to_owned())
}

impl MeetingApi {
    pub(super) async fn create(
        &self,
        request: &Request<pb::CreateMeetingRequest>,
    ) -> Result<pb::Meeting, MeetingError> {
        let (ctx, req) = (RequestCtx::from_request(request), request.get_ref());
        let new = Creation::parse(req)?;
        let key = IdempotencyKey::of(request, "CreateMeeting", &req.caller_id)?;
        self.require_user(&ctx, new.host).await?;
        let id = Uuid::new_v4();
        let mut attempts = 0;
        let (answer, recorded) = loop {
            attempts += 1;
            let code = invite::generate();
            let insert = NewMeeting {
                id,
                title: &new.title,
                description: new.description.as_deref(),
                host_id: new.host,
                invite_code: &code,
                scheduled_at: new.scheduled_at,
            };
            let (live, host) = (new.live, new.host);
            let mut conn = self.src.db.conn().await?;
            let result = conn
                .transaction::<_, MeetingError, _>(async |conn| {
                    if let Some(first) = idempotency::claim(key.as_ref(), conn).await? {
                        return Ok((first, None));
                    }
                    let row = db::insert_meeting(conn, &insert, live).await?;
                    let mut invalidation =
                        Invalidation::meeting_create(host, &row.invite_code, live);
                    if live {
                        // An instant meeting starts with its host in it.
                        db::insert_participant(conn, Uuid::new_v4(), id, host).await?;
                        invalidation =
                            invalidation.merge(Invalidation::participant_join_leave(id, host));
                    }
                    let recorded = Outbox::record(conn, invalidation).await?;
                    let answer = meeting_pb(&row, host);
                    idempotency::keep(key.as_ref(), conn, &answer).await?;
                    Ok((answer, Some(recorded)))
                })
                .await;
            match result {
                Err(MeetingError::Db(DbError::Unique { constraint }))
                    if constraint == db::INVITE_CODE_CONSTRAINT && attempts < CODE_ATTEMPTS => {}
                other => break other?,
            }
        };
        self.outbox.after_commit(recorded).await?;
        Ok(answer)
    }

    pub(super) async fn delete(
        &self,
        req: &pb::DeleteMeetingRequest,
    ) -> Result<pb::DeleteMeetingResponse, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        let mut conn = self.src.db.conn().await?;
        let recorded = conn
            .transaction::<_, MeetingError, _>(async |conn| {
                let meeting = db::lock_meeting(conn, id)
                    .await?
                    .ok_or(MeetingError::NotFound)?;
                if meeting.host_id != caller {
                    let denied = "only the host may delete this meeting";
                    return Err(not_host(conn, id, caller, denied).await?);
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
        self.outbox.after_commit(Some(recorded)).await?;
        Ok(pb::DeleteMeetingResponse { id: id.to_string() })
    }

    pub(super) async fn join(
        &self,
        request: &Request<pb::JoinMeetingRequest>,
    ) -> Result<(pb::JoinMeetingResponse, String), MeetingError> {
        let (ctx, req) = (&RequestCtx::from_request(request), request.get_ref());
        // A malformed code is refused before any Redis or Postgres call.
        let code = invite_code::parse(&req.invite_code)?;
        let caller = id::parse("callerId", &req.caller_id)?;
        let key = IdempotencyKey::of(request, "JoinMeeting", &req.caller_id)?;
        let preview = cache::meeting_by_invite_code(&self.src, code)
            .await?
            .ok_or(MeetingError::InvalidInviteCode)?;
        if preview.status == Status::Ended {
            return Err(ended_conflict());
        }
        // One call: the host's card for the answer, and whether the caller
        // is a registered user.
        let cards = self.cards(ctx, vec![preview.host, UserRef(caller)]).await?;
        // The caller's current name, for the room token the handler mints.
        let name = cards.get(&caller).ok_or_else(not_registered)?.name.clone();

        let mut conn = self.src.db.conn().await?;
        let (answer, recorded) = conn
            .transaction::<_, MeetingError, _>(async |conn| {
                // A replay answers what the first join did (its room token
                // is minted afresh by the handler, never kept here), with
                // the host's card as it is now: a card is user-service's data,
                // composed per answer, and a rename acknowledged since must
                // show (make chaos caught a replay showing the old name).
                if let Some(mut first) =
                    idempotency::claim::<pb::JoinMeetingResponse>(key.as_ref(), conn).await?
                {
                    if let Some(kept) = first.meeting.as_mut() {
                        let host = kept.host.as_ref().and_then(|h| h.id.parse().ok());
                        if let Some(card) = host.and_then(|h| cards.get(&h)) {
                            kept.host = Some(user_pb(card));
                        }
                    }
                    return Ok((first, None));
                }
                // The row is authoritative: the code may have been rotated or
                // the meeting ended since the cached lookup.
                let meeting = db::lock_meeting(conn, preview.id)
                    .await?
                    .filter(|m| m.invite_code == code)
                    .ok_or(MeetingError::InvalidInviteCode)?;
                if meeting.status == Status::Ended {
                    return Err(ended_conflict());
                }
                let (participant, recorded) =
                    match db::find_active_participant(conn, meeting.id, caller).await? {
                        Some(active) => (active, None),
                        None => {
                            let joined = db::join(conn, meeting.id, caller).await?;
                            let invalidation =
                                Invalidation::participant_join_leave(meeting.id, caller);
                            (joined, Some(Outbox::record(conn, invalidation).await?))
                        }
                    };
                let answer = pb::JoinMeetingResponse {
                    meeting: Some(preview_pb(&meeting, cards.get(&meeting.host_id))),
                    participant: Some(participant_pb(&participant)),
                    joined_now: recorded.is_some(),
                    // Minted per answer by the handler: a kept answer holds
                    // no secret.
                    livekit: None,
                };
                idempotency::keep(key.as_ref(), conn, &answer).await?;
                Ok((answer, recorded))
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok((answer, name))
    }

    pub(super) async fn leave(
        &self,
        req: &pb::LeaveMeetingRequest,
    ) -> Result<pb::Participant, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        let mut conn = self.src.db.conn().await?;
        let (participant, recorded) = conn
            .transaction::<_, MeetingError, _>(async |conn| {
                let meeting = db::lock_meeting(conn, id)
                    .await?
                    .ok_or(MeetingError::NotFound)?;
                if let Some(left) = db::leave(conn, id, caller).await? {
                    let invalidation = Invalidation::participant_join_leave(id, caller);
                    return Ok((left, Some(Outbox::record(conn, invalidation).await?)));
                }
                // Already left (or the meeting ended): nothing changes.
                match db::last_participation(conn, id, caller).await? {
                    Some(last) => Ok((last, None)),
                    // The host knows the meeting exists; a stranger must not
                    // learn it.
                    None if meeting.host_id == caller => Err(MeetingError::PermissionDenied(
                        "only a participant may leave this meeting",
                    )),
                    None => Err(MeetingError::NotFound),
                }
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok(participant_pb(&participant))
    }
}
