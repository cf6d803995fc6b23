//! The access check for meeting data that other services own (chats,
//! recordings): meeting-service answers what the caller is to the meeting
//! from its cached membership and meeting values, and the route decides.
//! Those services trust the caller id the gateway sends, as meeting-service
//! does, so every route over their data goes through here first.

use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use crate::Backends;
use crate::error::ApiError;
use crate::request_id::RequestId;

/// Host or participant (present or past); anyone else gets the 404 a missing
/// meeting gets, so ids cannot be probed.
pub async fn access(
    backends: &Backends,
    rid: &RequestId,
    meeting: Uuid,
    caller: Uuid,
) -> Result<pb::Access, ApiError> {
    let message = pb::CheckAccessRequest {
        caller_id: caller.to_string(),
        meeting_id: meeting.to_string(),
    };
    Ok(backends
        .meetings()
        .check_access(backends.request(message, rid))
        .await?
        .into_inner())
}

/// In the meeting now, and the meeting is LIVE: who may speak in it.
pub fn in_live_meeting(access: &pb::Access) -> bool {
    access.active && access.status == pb::MeetingStatus::Live as i32
}
