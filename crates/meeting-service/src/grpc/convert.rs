//! Rows and cached values → proto messages. Who may see what is decided
//! here in one place: the invite code goes to the meeting's host only.
//! Cached values hold user ids; the cards come from the answer's one
//! `BatchGetUsers` call (`Cards`).

use huddle_domain::time::to_proto as ts;
use huddle_proto::meeting::v1 as pb;
use uuid::Uuid;

use crate::{
    cache::{LiveItem, ParticipantItem, ParticipationItem, ScheduledItem, UserRef},
    db::{MeetingRow, ParticipantRow, Status},
    users::UserCard,
};

/// The cards of the users one answer shows, fetched in one call. A user
/// user-service does not know is shown as no user, as before.
pub(super) type Cards = std::collections::HashMap<Uuid, UserCard>;

fn card(cards: &Cards, user: UserRef) -> Option<pb::UserRef> {
    cards.get(&user.0).map(user_pb)
}

pub(super) fn status_pb(status: Status) -> i32 {
    match status {
        Status::Scheduled => pb::MeetingStatus::Scheduled,
        Status::Live => pb::MeetingStatus::Live,
        Status::Ended => pb::MeetingStatus::Ended,
    }
    .into()
}

/// The meeting as `viewer` may see it. Whoever knows the invite code can
/// join, so only the host gets it: a participant (present or past) who read
/// it could rejoin after the host rotated it to lock them out.
pub(super) fn meeting_pb(m: &MeetingRow, viewer: Uuid) -> pb::Meeting {
    pb::Meeting {
        id: m.id.to_string(),
        title: m.title.clone(),
        description: m.description.clone(),
        status: status_pb(m.status),
        host_id: m.host_id.to_string(),
        invite_code: (viewer == m.host_id).then(|| m.invite_code.clone()),
        scheduled_at: Some(ts(m.scheduled_at)),
        started_at: m.started_at.map(ts),
        ended_at: m.ended_at.map(ts),
        created_at: Some(ts(m.created_at)),
        updated_at: Some(ts(m.updated_at)),
    }
}

pub(super) fn preview_pb(m: &MeetingRow, host: Option<&UserCard>) -> pb::MeetingPreview {
    pb::MeetingPreview {
        id: m.id.to_string(),
        title: m.title.clone(),
        status: status_pb(m.status),
        scheduled_at: Some(ts(m.scheduled_at)),
        host: host.map(user_pb),
    }
}

pub(super) fn participant_pb(p: &ParticipantRow) -> pb::Participant {
    pb::Participant {
        id: p.id.to_string(),
        meeting_id: p.meeting_id.to_string(),
        user_id: p.user_id.to_string(),
        joined_at: Some(ts(p.joined_at)),
        left_at: p.left_at.map(ts),
    }
}

pub(super) fn participant_with_user_pb(
    p: &ParticipantItem,
    cards: &Cards,
) -> pb::ParticipantWithUser {
    pb::ParticipantWithUser {
        participant: Some(participant_pb(&p.participant)),
        user: card(cards, p.user),
    }
}

pub(super) fn user_pb(u: &UserCard) -> pb::UserRef {
    pb::UserRef {
        id: u.id.to_string(),
        name: u.name.clone(),
        image: u.image.clone(),
    }
}

pub(super) fn live_pb(m: LiveItem, cards: &Cards) -> pb::LiveMeeting {
    pb::LiveMeeting {
        id: m.id.to_string(),
        title: m.title,
        scheduled_at: Some(ts(m.scheduled_at)),
        started_at: m.started_at.map(ts),
        host: card(cards, m.host),
        participant_count: unsigned(m.participants),
    }
}

pub(super) fn scheduled_pb(m: ScheduledItem, cards: &Cards) -> pb::ScheduledMeeting {
    pb::ScheduledMeeting {
        id: m.id.to_string(),
        title: m.title,
        description: m.description,
        scheduled_at: Some(ts(m.scheduled_at)),
        host: card(cards, m.host),
    }
}

pub(super) fn participation_pb(p: ParticipationItem, cards: &Cards) -> pb::Participation {
    let m = p.meeting;
    pb::Participation {
        participant: Some(participant_pb(&p.participant)),
        meeting: Some(pb::ParticipationMeeting {
            id: m.id.to_string(),
            title: m.title,
            status: status_pb(m.status),
            scheduled_at: Some(ts(m.scheduled_at)),
            started_at: m.started_at.map(ts),
            ended_at: m.ended_at.map(ts),
            host: card(cards, m.host),
        }),
    }
}

pub(super) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
