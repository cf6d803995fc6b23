//! The tonic implementation of `huddle.meeting.v1.MeetingService`: validate
//! (shared rules, `huddle-domain`), read through the cache, write in a
//! transaction that records its cache invalidation (outbox), then apply it
//! after the commit.
//!
//! This file holds the trait impl and what every handler shares; the work is
//! in `writes.rs` (create, delete, join, leave), `edits.rs` (update, start,
//! end), `reads.rs` (reads with an access check) and `convert.rs` (rows to
//! proto, including who sees the invite code).

mod convert;
mod edits;
mod media;
mod reads;
mod writes;

use diesel_async::AsyncPgConnection;
use huddle_domain::id;
use huddle_proto::meeting::v1::{self as pb, meeting_service_server::MeetingService};
use huddle_serve::{Outbox, to_completion};
use tonic::{Request, Response, Status as GrpcStatus};
use uuid::Uuid;

use self::convert::{
    Cards, live_pb, meeting_pb, participant_with_user_pb, participation_pb, scheduled_pb, unsigned,
};
use crate::{
    cache::{self, Sources, UserRef},
    cascade::Cascade,
    db::{self, Status},
    error::MeetingError,
    recordings::Recordings,
    users::RequestCtx,
};

/// Fresh invite codes tried before giving up on a (72-bit) collision streak.
const CODE_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct MeetingApi {
    pub(crate) src: Sources,
    pub(crate) outbox: Outbox,
    pub(crate) cascade: Cascade,
    /// recording-service, the signer of room tokens (`None`: none here).
    pub(crate) media: Option<Recordings>,
}

type Reply<T> = Result<Response<T>, GrpcStatus>;

impl MeetingApi {
    pub fn new(src: Sources, outbox: Outbox, cascade: Cascade, media: Option<Recordings>) -> Self {
        Self {
            src,
            outbox,
            cascade,
            media,
        }
    }

    async fn require_user(&self, ctx: &RequestCtx, caller: Uuid) -> Result<(), MeetingError> {
        if self.src.users.exists(ctx, caller).await? {
            Ok(())
        } else {
            Err(not_registered())
        }
    }

    /// The cards of every user an answer shows: the answer's one
    /// `BatchGetUsers` call, which user-service serves from its own cached
    /// `user` keys (and from Postgres while its reads are held). Composed
    /// per answer, never cached here, so no meeting value can outlive a
    /// profile update (`cache.rs`).
    async fn cards(&self, ctx: &RequestCtx, users: Vec<UserRef>) -> Result<Cards, MeetingError> {
        Ok(self
            .src
            .users
            .cards(ctx, users.into_iter().map(|u| u.0))
            .await?)
    }
}

fn not_registered() -> MeetingError {
    MeetingError::PermissionDenied("the caller is not a registered user")
}

/// Why a non-host may not do a host-only thing to an existing meeting: a
/// participant (present or past) knows the meeting exists and is told it is
/// not allowed; anyone else gets the answer a missing meeting gets.
async fn not_host(
    conn: &mut AsyncPgConnection,
    meeting: Uuid,
    caller: Uuid,
    denied: &'static str,
) -> Result<MeetingError, MeetingError> {
    Ok(match db::last_participation(conn, meeting, caller).await? {
        Some(_) => MeetingError::PermissionDenied(denied),
        None => MeetingError::NotFound,
    })
}

#[tonic::async_trait]
impl MeetingService for MeetingApi {
    async fn create_meeting(&self, req: Request<pb::CreateMeetingRequest>) -> Reply<pb::Meeting> {
        let this = self.clone();
        to_completion(async move { Ok(Response::new(this.create(&req).await?)) }).await
    }

    async fn get_meeting(&self, req: Request<pb::GetMeetingRequest>) -> Reply<pb::MeetingDetails> {
        let ctx = RequestCtx::from_request(&req);
        async { Ok(Response::new(self.details(&ctx, req.get_ref()).await?)) }
            .await
            .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn update_meeting(&self, req: Request<pb::UpdateMeetingRequest>) -> Reply<pb::Meeting> {
        let this = self.clone();
        to_completion(async move { Ok(Response::new(this.update(req.get_ref()).await?)) }).await
    }

    async fn delete_meeting(
        &self,
        req: Request<pb::DeleteMeetingRequest>,
    ) -> Reply<pb::DeleteMeetingResponse> {
        let this = self.clone();
        to_completion(async move { Ok(Response::new(this.delete(req.get_ref()).await?)) }).await
    }

    async fn start_meeting(&self, req: Request<pb::MeetingActionRequest>) -> Reply<pb::Meeting> {
        self.status_action(req, Status::Live).await
    }

    async fn end_meeting(&self, req: Request<pb::MeetingActionRequest>) -> Reply<pb::Meeting> {
        self.status_action(req, Status::Ended).await
    }

    async fn join_meeting(
        &self,
        req: Request<pb::JoinMeetingRequest>,
    ) -> Reply<pb::JoinMeetingResponse> {
        let ctx = RequestCtx::from_request(&req);
        let caller = id::parse("callerId", &req.get_ref().caller_id).map_err(MeetingError::from)?;
        let this = self.clone();
        let (mut answer, name) = to_completion(async move { Ok(this.join(&req).await?) }).await?;
        // After the write and outside its kept answer: a replay mints anew.
        answer.livekit = self.join_token(&ctx, &answer, caller, name).await;
        Ok(Response::new(answer))
    }

    async fn issue_media_token(
        &self,
        req: Request<pb::IssueMediaTokenRequest>,
    ) -> Reply<pb::MediaToken> {
        let ctx = RequestCtx::from_request(&req);
        async { Ok(Response::new(self.media_token(&ctx, req.get_ref()).await?)) }
            .await
            .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn leave_meeting(&self, req: Request<pb::LeaveMeetingRequest>) -> Reply<pb::Participant> {
        let this = self.clone();
        to_completion(async move { Ok(Response::new(this.leave(req.get_ref()).await?)) }).await
    }

    async fn list_live_meetings(
        &self,
        req: Request<pb::ListLiveMeetingsRequest>,
    ) -> Reply<pb::ListLiveMeetingsResponse> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let items = cache::live_meetings(&self.src).await?;
            let cards = self
                .cards(&ctx, items.iter().map(|m| m.host).collect())
                .await?;
            Ok(Response::new(pb::ListLiveMeetingsResponse {
                meetings: items.into_iter().map(|m| live_pb(m, &cards)).collect(),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_scheduled_meetings(
        &self,
        req: Request<pb::ListScheduledMeetingsRequest>,
    ) -> Reply<pb::ListScheduledMeetingsResponse> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let items = cache::scheduled_meetings(&self.src).await?;
            let cards = self
                .cards(&ctx, items.iter().map(|m| m.host).collect())
                .await?;
            Ok(Response::new(pb::ListScheduledMeetingsResponse {
                meetings: items.into_iter().map(|m| scheduled_pb(m, &cards)).collect(),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn check_access(&self, req: Request<pb::CheckAccessRequest>) -> Reply<pb::Access> {
        async { Ok(Response::new(self.access(req.get_ref()).await?)) }
            .await
            .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_participants(
        &self,
        req: Request<pb::ListParticipantsRequest>,
    ) -> Reply<pb::ListParticipantsResponse> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let req = req.get_ref();
            let caller = id::parse("callerId", &req.caller_id)?;
            let id = id::parse("id", &req.id)?;
            let after = (!req.after.is_empty())
                .then(|| id::parse("after", &req.after))
                .transpose()?;
            let limit = match req.limit {
                0 => cache::PARTICIPANTS_PAGE,
                n @ 1..=100 => n as usize,
                _ => {
                    return Err(MeetingError::InvalidArgument(format!(
                        "limit: must be 1 to {}",
                        cache::MAX_PARTICIPANTS_PAGE
                    )));
                }
            };
            // Side by side: the page is read whatever the check says, but
            // answered only if it admits the caller.
            let (authorized, page) = tokio::join!(
                self.authorize_read(id, caller),
                cache::participants_page(&self.src, id, after, limit),
            );
            authorized?;
            // An `after` that is no participant of this meeting (a cursor
            // from elsewhere) is an empty page, not an error: the id is
            // well-formed, so the request is valid.
            let page = page?.unwrap_or(cache::ParticipantsPage {
                items: Vec::new(),
                next_after: None,
            });
            let cards = self
                .cards(&ctx, page.items.iter().map(|p| p.user).collect())
                .await?;
            Ok(Response::new(pb::ListParticipantsResponse {
                participants: (page.items.iter())
                    .map(|p| participant_with_user_pb(p, &cards))
                    .collect(),
                next_after: page.next_after.map(|p| p.to_string()).unwrap_or_default(),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn count_active_participants(
        &self,
        req: Request<pb::CountActiveParticipantsRequest>,
    ) -> Reply<pb::CountActiveParticipantsResponse> {
        async {
            let caller = id::parse("callerId", &req.get_ref().caller_id)?;
            let id = id::parse("id", &req.get_ref().id)?;
            self.authorize_read(id, caller).await?;
            let count = cache::active_participant_count(&self.src, id).await?;
            Ok(Response::new(pb::CountActiveParticipantsResponse {
                count: unsigned(count),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_user_meetings(
        &self,
        req: Request<pb::ListUserMeetingsRequest>,
    ) -> Reply<pb::ListUserMeetingsResponse> {
        async {
            let user = id::parse("userId", &req.get_ref().user_id)?;
            let rows = cache::user_meetings(&self.src, user).await?;
            Ok(Response::new(pb::ListUserMeetingsResponse {
                // Meetings `user` hosts: the codes are theirs to see.
                meetings: rows.iter().map(|row| meeting_pb(row, user)).collect(),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn list_user_participations(
        &self,
        req: Request<pb::ListUserParticipationsRequest>,
    ) -> Reply<pb::ListUserParticipationsResponse> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let user = id::parse("userId", &req.get_ref().user_id)?;
            let items = cache::user_participations(&self.src, user).await?;
            let cards = self
                .cards(&ctx, items.iter().map(|p| p.meeting.host).collect())
                .await?;
            Ok(Response::new(pb::ListUserParticipationsResponse {
                participations: (items.into_iter())
                    .map(|p| participation_pb(p, &cards))
                    .collect(),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }

    async fn get_user_meeting_stats(
        &self,
        req: Request<pb::GetUserMeetingStatsRequest>,
    ) -> Reply<pb::UserMeetingStats> {
        async {
            let user = id::parse("userId", &req.get_ref().user_id)?;
            let stats = cache::host_stats(&self.src, user).await?;
            Ok(Response::new(pb::UserMeetingStats {
                total: unsigned(stats.total),
                live: unsigned(stats.live),
                scheduled: unsigned(stats.scheduled),
                ended: unsigned(stats.ended),
            }))
        }
        .await
        .map_err(|e: MeetingError| GrpcStatus::from(e))
    }
}

impl MeetingApi {
    async fn status_action(
        &self,
        req: Request<pb::MeetingActionRequest>,
        target: Status,
    ) -> Reply<pb::Meeting> {
        let this = self.clone();
        to_completion(async move {
            Ok(Response::new(
                this.change_status(req.get_ref(), target).await?,
            ))
        })
        .await
    }
}
