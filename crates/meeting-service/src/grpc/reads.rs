//! Reads that need an access check against the meeting's data: details,
//! participants, active count (host or participant).

use huddle_domain::id;
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use super::{
    MeetingApi,
    convert::{meeting_pb, unsigned, user_pb},
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
        let meeting = cache::meeting(&self.src, ctx, id)
            .await?
            .ok_or(MeetingError::NotFound)?;
        // The host needs no membership lookup.
        let (authorized, count) = tokio::join!(
            async {
                if meeting.meeting.host_id == caller {
                    Ok(())
                } else {
                    self.authorize_read(id, caller).await
                }
            },
            cache::active_participant_count(&self.src, id),
        );
        authorized?;
        Ok(pb::MeetingDetails {
            // The cached value is shared by every caller; the code is cut
            // from the answer for anyone but the host.
            meeting: Some(meeting_pb(&meeting.meeting, caller)),
            host: meeting.host.as_ref().map(user_pb),
            participant_count: unsigned(count?),
            // Joins this answer when chat-service exists: ask it for the
            // count (cached under its own key) here, beside the participant
            // count. Unknown until then, never a made-up 0.
            chat_message_count: None,
        })
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
