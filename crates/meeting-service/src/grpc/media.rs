//! LiveKit room tokens: who may have one is decided here (host or active
//! participant of a LIVE meeting); recording-service, which alone holds the
//! LiveKit secret, signs it. Never cached, never kept: an idempotent join's
//! replay gets a token minted for that answer, after the same checks.

use huddle_domain::id;
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use super::{MeetingApi, not_registered};
use crate::{cache::UserRef, db::Status, error::MeetingError, users::RequestCtx};

impl MeetingApi {
    pub(super) async fn media_token(
        &self,
        ctx: &RequestCtx,
        req: &pb::IssueMediaTokenRequest,
    ) -> Result<pb::MediaToken, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        self.mint_for(ctx, id, caller, None).await
    }

    /// The token of a join's answer while the meeting is LIVE; `None` when
    /// it is not (or the caller is no longer in it: a replay after a leave)
    /// or the token cannot be minted now — the join itself stands and the
    /// client asks `IssueMediaToken` again.
    pub(super) async fn join_token(
        &self,
        ctx: &RequestCtx,
        answer: &pb::JoinMeetingResponse,
        caller: Uuid,
        name: String,
    ) -> Option<pb::MediaToken> {
        let meeting = answer.meeting.as_ref()?;
        let id = Uuid::parse_str(&meeting.id).ok()?;
        match self.mint_for(ctx, id, caller, Some(name)).await {
            Ok(token) => Some(token),
            Err(MeetingError::PermissionDenied(_) | MeetingError::NotFound) => None,
            Err(e) => {
                tracing::warn!(meeting = %id, error = %e, "join answered without a room token");
                None
            }
        }
    }

    /// Host, or active participant, of a LIVE meeting; a stranger is told
    /// the meeting does not exist, like on every other route. `name`: the
    /// caller's current name when the caller already has it (a join asked
    /// user-service for it in its own batch call).
    async fn mint_for(
        &self,
        ctx: &RequestCtx,
        id: Uuid,
        caller: Uuid,
        name: Option<String>,
    ) -> Result<pb::MediaToken, MeetingError> {
        let (meeting, membership) = self.member_view(id, caller).await?;
        let host = meeting.meeting.host_id == caller;
        if meeting.meeting.status != Status::Live {
            return Err(MeetingError::PermissionDenied(
                "the meeting is not LIVE: its room is closed",
            ));
        }
        if !host && !membership.active {
            return Err(MeetingError::PermissionDenied(
                "only a participant in the meeting now gets a room token (join again first)",
            ));
        }
        let media = self.media.as_ref().ok_or_else(|| {
            MeetingError::Media(huddle_common::public_unavailable(
                "LiveKit is not configured for this deployment",
            ))
        })?;
        let name = match name {
            Some(name) => name,
            None => {
                let cards = self.cards(ctx, vec![UserRef(caller)]).await?;
                cards.get(&caller).ok_or_else(not_registered)?.name.clone()
            }
        };
        let token = (media.mint(id, caller, &name, host).await).map_err(MeetingError::Media)?;
        Ok(pb::MediaToken {
            url: token.url,
            token: token.token,
            expires_at: token.expires_at,
        })
    }
}
