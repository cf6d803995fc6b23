//! Meeting response shapes, after the Prisma selects of the original guide:
//! camelCase fields, nested `host` / `user` objects (`id`, `name`, `image`,
//! never an email), `_count` objects, RFC 3339 UTC timestamps.

use huddle_domain::time as clock;
use huddle_proto::meeting::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A service answer that breaks the contract (a missing timestamp, an
/// unknown status) is our bug: 500, logged.
fn broken(what: &str) -> ApiError {
    tracing::error!(what, "meeting-service returned a malformed message");
    ApiError::internal()
}

pub(crate) fn time(ts: Option<prost_types::Timestamp>, what: &str) -> Result<String, ApiError> {
    optional_time(ts, what)?.ok_or_else(|| broken(what))
}

pub(crate) fn optional_time(
    ts: Option<prost_types::Timestamp>,
    what: &str,
) -> Result<Option<String>, ApiError> {
    ts.map(|ts| {
        clock::from_proto(&ts)
            .map(clock::to_rfc3339)
            .ok_or_else(|| broken(what))
    })
    .transpose()
}

fn status(raw: i32) -> Result<&'static str, ApiError> {
    match pb::MeetingStatus::try_from(raw) {
        Ok(pb::MeetingStatus::Scheduled) => Ok("SCHEDULED"),
        Ok(pb::MeetingStatus::Live) => Ok("LIVE"),
        Ok(pb::MeetingStatus::Ended) => Ok("ENDED"),
        _ => Err(broken("status")),
    }
}

/// Another user as a meeting shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[schema(required = true)]
    pub image: Option<String>,
}

impl From<pb::UserRef> for UserRef {
    fn from(u: pb::UserRef) -> Self {
        Self {
            id: u.id,
            name: u.name,
            image: u.image,
        }
    }
}

/// A meeting's own fields (what create, update, start and end return, and
/// the entries of a user's hosted meetings).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meeting {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// SCHEDULED, LIVE or ENDED.
    #[schema(example = "SCHEDULED")]
    pub status: &'static str,
    #[schema(format = Uuid)]
    pub host_id: String,
    /// Share it to let others join (`POST /api/meetings/join`). Shown to the
    /// host only: absent for everyone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, example = "q3Xk_9LmP-2a")]
    pub invite_code: Option<String>,
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    #[schema(format = DateTime, required = true)]
    pub started_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl TryFrom<pb::Meeting> for Meeting {
    type Error = ApiError;

    fn try_from(m: pb::Meeting) -> Result<Self, ApiError> {
        Ok(Self {
            status: status(m.status)?,
            scheduled_at: time(m.scheduled_at, "scheduled_at")?,
            started_at: optional_time(m.started_at, "started_at")?,
            ended_at: optional_time(m.ended_at, "ended_at")?,
            created_at: time(m.created_at, "created_at")?,
            updated_at: time(m.updated_at, "updated_at")?,
            id: m.id,
            title: m.title,
            description: m.description,
            host_id: m.host_id,
            invite_code: m.invite_code,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeetingCounts {
    /// Active participants (joined and not left).
    pub participants: u64,
    /// Messages posted (from chat-service); `null` only while chat-service
    /// cannot answer, never a made-up 0.
    #[schema(required = true)]
    pub chat_messages: Option<u64>,
}

/// `GET /api/meetings/{id}`: the meeting, its host and its counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingDetails {
    #[serde(flatten)]
    pub meeting: Meeting,
    /// `null` only if the user service does not know the host.
    #[schema(required = true)]
    pub host: Option<UserRef>,
    #[serde(rename = "_count")]
    pub count: MeetingCounts,
}

impl TryFrom<pb::MeetingDetails> for MeetingDetails {
    type Error = ApiError;

    fn try_from(d: pb::MeetingDetails) -> Result<Self, ApiError> {
        Ok(Self {
            meeting: d.meeting.ok_or_else(|| broken("meeting"))?.try_into()?,
            host: d.host.map(UserRef::from),
            count: MeetingCounts {
                participants: d.participant_count,
                chat_messages: d.chat_message_count,
            },
        })
    }
}

/// What an invite code shows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeetingPreview {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    pub status: &'static str,
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    #[schema(required = true)]
    pub host: Option<UserRef>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub meeting_id: String,
    #[schema(format = Uuid)]
    pub user_id: String,
    #[schema(format = DateTime)]
    pub joined_at: String,
    /// `null` while in the meeting.
    #[schema(format = DateTime, required = true)]
    pub left_at: Option<String>,
}

impl TryFrom<pb::Participant> for Participant {
    type Error = ApiError;

    fn try_from(p: pb::Participant) -> Result<Self, ApiError> {
        Ok(Self {
            joined_at: time(p.joined_at, "joined_at")?,
            left_at: optional_time(p.left_at, "left_at")?,
            id: p.id,
            meeting_id: p.meeting_id,
            user_id: p.user_id,
        })
    }
}

/// `POST /api/meetings/join`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult {
    pub meeting: MeetingPreview,
    pub participant: Participant,
    /// `false` when the caller was already in the meeting (nothing changed).
    pub joined_now: bool,
    /// The LiveKit room token while the meeting is LIVE, minted for this
    /// answer (a replay gets a fresh one); `null` when the meeting is not
    /// LIVE or no token could be minted now (ask `POST
    /// /api/meetings/{id}/media-token`).
    #[schema(required = true)]
    pub livekit: Option<MediaToken>,
}

/// A LiveKit access token for the meeting's room (room name = meeting id).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaToken {
    /// Where the LiveKit client connects.
    pub url: String,
    /// The JWT to connect with (identity = the user's id).
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

impl TryFrom<pb::MediaToken> for MediaToken {
    type Error = ApiError;

    fn try_from(t: pb::MediaToken) -> Result<Self, ApiError> {
        Ok(Self {
            expires_at: time(t.expires_at, "expires_at")?,
            url: t.url,
            token: t.token,
        })
    }
}

impl TryFrom<pb::JoinMeetingResponse> for JoinResult {
    type Error = ApiError;

    fn try_from(r: pb::JoinMeetingResponse) -> Result<Self, ApiError> {
        let m = r.meeting.ok_or_else(|| broken("meeting"))?;
        Ok(Self {
            meeting: MeetingPreview {
                status: status(m.status)?,
                scheduled_at: time(m.scheduled_at, "scheduled_at")?,
                id: m.id,
                title: m.title,
                host: m.host.map(UserRef::from),
            },
            participant: r
                .participant
                .ok_or_else(|| broken("participant"))?
                .try_into()?,
            joined_now: r.joined_now,
            livekit: r.livekit.map(MediaToken::try_from).transpose()?,
        })
    }
}

/// An entry of `GET /api/meetings/{id}/participants`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantWithUser {
    #[serde(flatten)]
    pub participant: Participant,
    #[schema(required = true)]
    pub user: Option<UserRef>,
}

impl TryFrom<pb::ParticipantWithUser> for ParticipantWithUser {
    type Error = ApiError;

    fn try_from(p: pb::ParticipantWithUser) -> Result<Self, ApiError> {
        Ok(Self {
            participant: p
                .participant
                .ok_or_else(|| broken("participant"))?
                .try_into()?,
            user: p.user.map(UserRef::from),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantCounts {
    /// Active participants.
    pub participants: u64,
}

/// An entry of `GET /api/meetings/live`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveMeeting {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(required = true)]
    pub host: Option<UserRef>,
    #[serde(rename = "_count")]
    pub count: ParticipantCounts,
}

impl TryFrom<pb::LiveMeeting> for LiveMeeting {
    type Error = ApiError;

    fn try_from(m: pb::LiveMeeting) -> Result<Self, ApiError> {
        Ok(Self {
            scheduled_at: time(m.scheduled_at, "scheduled_at")?,
            started_at: time(m.started_at, "started_at")?,
            id: m.id,
            title: m.title,
            host: m.host.map(UserRef::from),
            count: ParticipantCounts {
                participants: m.participant_count,
            },
        })
    }
}

/// An entry of `GET /api/meetings/scheduled`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledMeeting {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    #[schema(required = true)]
    pub host: Option<UserRef>,
}

impl TryFrom<pb::ScheduledMeeting> for ScheduledMeeting {
    type Error = ApiError;

    fn try_from(m: pb::ScheduledMeeting) -> Result<Self, ApiError> {
        Ok(Self {
            scheduled_at: time(m.scheduled_at, "scheduled_at")?,
            id: m.id,
            title: m.title,
            description: m.description,
            host: m.host.map(UserRef::from),
        })
    }
}

/// The meeting of a participation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipationMeeting {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    pub status: &'static str,
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    #[schema(format = DateTime, required = true)]
    pub started_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
    #[schema(required = true)]
    pub host: Option<UserRef>,
}

/// An entry of `GET /api/users/{id}/participations`: one join (and its
/// leave) with the meeting it was in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Participation {
    #[serde(flatten)]
    pub participant: Participant,
    pub meeting: ParticipationMeeting,
}

impl TryFrom<pb::Participation> for Participation {
    type Error = ApiError;

    fn try_from(p: pb::Participation) -> Result<Self, ApiError> {
        let m = p.meeting.ok_or_else(|| broken("meeting"))?;
        Ok(Self {
            participant: p
                .participant
                .ok_or_else(|| broken("participant"))?
                .try_into()?,
            meeting: ParticipationMeeting {
                status: status(m.status)?,
                scheduled_at: time(m.scheduled_at, "scheduled_at")?,
                started_at: optional_time(m.started_at, "started_at")?,
                ended_at: optional_time(m.ended_at, "ended_at")?,
                id: m.id,
                title: m.title,
                host: m.host.map(UserRef::from),
            },
        })
    }
}

/// `GET /api/users/{id}/stats`: meetings the user hosts, by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingStats {
    pub total: u64,
    pub live: u64,
    pub scheduled: u64,
    pub ended: u64,
}

/// `GET /api/meetings/{id}/participants/count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveCount {
    /// Participants who joined and have not left.
    pub count: u64,
}

/// `DELETE /api/meetings/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    #[schema(format = Uuid)]
    pub id: String,
}

/// Converts every element, failing on the first malformed one.
pub fn all<P, T: TryFrom<P, Error = ApiError>>(items: Vec<P>) -> Result<Vec<T>, ApiError> {
    items.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn details_follow_the_prisma_shape() {
        let details = pb::MeetingDetails {
            meeting: Some(pb::Meeting {
                id: "m".into(),
                title: "Sync".into(),
                description: None,
                status: pb::MeetingStatus::Live.into(),
                host_id: "h".into(),
                invite_code: Some("AZaz09-_AZaz".into()),
                scheduled_at: ts(1_700_000_000),
                started_at: ts(1_700_000_100),
                ended_at: None,
                created_at: ts(1_700_000_000),
                updated_at: ts(1_700_000_100),
            }),
            host: Some(pb::UserRef {
                id: "h".into(),
                name: "Ada".into(),
                image: None,
            }),
            participant_count: 3,
            chat_message_count: None,
        };
        let json = serde_json::to_value(MeetingDetails::try_from(details).unwrap()).unwrap();
        assert_eq!(json["status"], "LIVE");
        assert_eq!(json["inviteCode"], "AZaz09-_AZaz");
        assert_eq!(json["hostId"], "h");
        assert_eq!(json["startedAt"], "2023-11-14T22:15:00.000Z");
        assert!(json["endedAt"].is_null());
        assert_eq!(json["host"]["name"], "Ada");
        // The host card is exactly these fields (no email, ever).
        let mut fields: Vec<&String> = json["host"].as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["id", "image", "name"]);
        assert_eq!(json["_count"]["participants"], 3);
        assert!(json["_count"]["chatMessages"].is_null());
    }

    #[test]
    fn a_meeting_without_its_code_has_no_invite_code_field() {
        let meeting = pb::Meeting {
            status: pb::MeetingStatus::Live.into(),
            invite_code: None,
            scheduled_at: ts(1_700_000_000),
            created_at: ts(1_700_000_000),
            updated_at: ts(1_700_000_000),
            ..pb::Meeting::default()
        };
        let json = serde_json::to_value(Meeting::try_from(meeting).unwrap()).unwrap();
        assert!(json.get("inviteCode").is_none(), "{json}");
    }

    #[test]
    fn a_meeting_without_timestamps_is_an_internal_error() {
        let err = Meeting::try_from(pb::Meeting {
            status: pb::MeetingStatus::Scheduled.into(),
            ..pb::Meeting::default()
        })
        .unwrap_err();
        assert_eq!(err.status().as_u16(), 500);
        let err = Meeting::try_from(pb::Meeting::default()).unwrap_err();
        assert_eq!(err.status().as_u16(), 500);
    }
}
