//! Reads that need an access check against the meeting's data: details,
//! participants, active count (host or participant).

use huddle_domain::id;
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use super::{
    MeetingApi,
    convert::{meeting_pb, status_pb, unsigned, user_pb},
};
use crate::{cache, error::MeetingError, users::RequestCtx};

impl MeetingApi {
    pub(super) async fn details(
        &self,
        ctx: &RequestCtx,
        req: &pb::GetMeetingRequest,
    ) -> Result<pb::MeetingDetails, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("id", &req.id)?;
        let meeting = cache::meeting(&self.src, id)
            .await?
            .ok_or(MeetingError::NotFound)?;
        // The host needs no membership lookup. The card is asked for beside
        // the check: the three parts cost one round trip after the row.
        let (authorized, count, cards) = tokio::join!(
            async {
                if meeting.meeting.host_id == caller {
                    Ok(())
                } else {
                    self.authorize_read(id, caller).await
                }
            },
            cache::active_participant_count(&self.src, id),
            self.cards(ctx, vec![meeting.host]),
        );
        authorized?;
        Ok(pb::MeetingDetails {
            // The cached value is shared by every caller; the code is cut
            // from the answer for anyone but the host.
            meeting: Some(meeting_pb(&meeting.meeting, caller)),
            host: cards?.get(&meeting.host.0).map(user_pb),
            participant_count: unsigned(count?),
            // The gateway asks chat-service for it (CountMessages, cached as
            // meetingChatCount) beside this call, so meeting reads need no
            // chat dependency here: never set by this service.
            chat_message_count: None,
        })
    }

    /// What the caller is to the meeting (`CheckAccess`), for the gateway's
    /// checks on data other services own. The status comes from the cached
    /// meeting value, which every status change invalidates; the membership
    /// value holds only what joins and leaves change.
    pub(super) async fn access(
        &self,
        req: &pb::CheckAccessRequest,
    ) -> Result<pb::Access, MeetingError> {
        let caller = id::parse("callerId", &req.caller_id)?;
        let id = id::parse("meetingId", &req.meeting_id)?;
        let (meeting, membership) = self.member_view(id, caller).await?;
        Ok(pb::Access {
            host_id: meeting.meeting.host_id.to_string(),
            status: status_pb(meeting.meeting.status),
            participated: membership.participated,
            active: membership.active,
        })
    }

    /// The meeting and what `caller` is to it, from the cached values (one
    /// round trip); a stranger is told the meeting does not exist.
    pub(super) async fn member_view(
        &self,
        id: Uuid,
        caller: Uuid,
    ) -> Result<(cache::CachedMeeting, cache::Membership), MeetingError> {
        let (meeting, membership) = tokio::join!(
            cache::meeting(&self.src, id),
            cache::membership(&self.src, id, caller),
        );
        let meeting = meeting?.ok_or(MeetingError::NotFound)?;
        let membership = membership?
            .filter(|membership| membership.admits(caller))
            .ok_or(MeetingError::NotFound)?;
        Ok((meeting, membership))
    }

    /// Whether `caller` may see the meeting: host or participant (present
    /// or past), from the cached membership value — never the participant
    /// list. Anyone else is told the meeting does not exist, exactly as for
    /// a missing one, so ids cannot be probed.
    pub(super) async fn authorize_read(&self, id: Uuid, caller: Uuid) -> Result<(), MeetingError> {
        cache::membership(&self.src, id, caller)
            .await?
            .filter(|membership| membership.admits(caller))
            .map(drop)
            .ok_or(MeetingError::NotFound)
    }
}
