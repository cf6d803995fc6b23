//! The invalidation rule table of SPEC §5, as data.
//!
//! Each [`Rule`] says which key names (and which tag indexes) a kind of write
//! makes stale. The typed constructors on [`Invalidation`] take the entities a
//! write touched and expand the row into concrete keys, so a service can only
//! say *what it wrote*; *what to delete* is decided here, the same way for
//! every service.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{CacheKey, KeyName, RECENT_CHATS_LIMIT, Tag, TagKind};
pub use crate::window::{WindowAppend, WindowEntry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WriteKind {
    UserCreate,
    UserProfileUpdate,
    MeetingCreate,
    MeetingUpdate,
    MeetingDelete,
    ParticipantJoinLeave,
    ChatMessage,
    RecordingStatusChange,
}

/// When a target of a row applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Always,
    /// Only when the meeting's status changed in this write.
    StatusChanged,
    /// Only when the meeting was created already LIVE.
    CreatedLive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every key of this name that belongs to the write's entities.
    Key(KeyName),
    /// The write's entry is appended to this window key where it is cached
    /// (`Cache::append_to_window`); a write that carries no entry deletes it.
    Append(KeyName),
    /// Every key registered under this tag of the write's entity.
    Tag(TagKind),
}

#[derive(Debug)]
pub struct Rule {
    pub write: WriteKind,
    pub targets: &'static [(Cond, Target)],
}

use Cond::*;
use KeyName as K;
use Target::{Append, Key, Tag as T};

pub const RULES: &[Rule] = &[
    // Not in SPEC §5: a lookup of this email before the user existed left a
    // not-found marker that would hide the new user for up to 30 s.
    Rule {
        write: WriteKind::UserCreate,
        targets: &[(Always, Key(K::UserByEmail))],
    },
    // user, userByEmail (old and new), and every value embedding the user:
    // no other does (other services cache ids and compose cards per answer),
    // so user-service's outbox and hold cover all a rename makes stale.
    Rule {
        write: WriteKind::UserProfileUpdate,
        targets: &[(Always, Key(K::User)), (Always, Key(K::UserByEmail))],
    },
    Rule {
        write: WriteKind::MeetingCreate,
        targets: &[
            (Always, Key(K::UserMeetings)),
            (Always, Key(K::UserMeetingCount)),
            (Always, Key(K::ScheduledMeetings)),
            (CreatedLive, Key(K::LiveMeetings)),
            // Not in SPEC §5: a lookup of the new code before it existed left
            // a not-found marker that would hide the meeting for up to 30 s.
            (Always, Key(K::MeetingByInviteCode)),
        ],
    },
    Rule {
        write: WriteKind::MeetingUpdate,
        targets: &[
            (Always, Key(K::Meeting)),
            (Always, Key(K::MeetingByInviteCode)),
            (Always, Key(K::UserMeetings)),
            // SPEC §5 lists these on status change only; they also embed the
            // title and times, so any update would leave them stale.
            (Always, Key(K::LiveMeetings)),
            (Always, Key(K::ScheduledMeetings)),
            (Always, Key(K::UserParticipations)),
            (StatusChanged, Key(K::UserMeetingCount)),
            // Not in SPEC: ending marks every participant as left.
            (StatusChanged, Key(K::MeetingMember)),
        ],
    },
    Rule {
        write: WriteKind::MeetingDelete,
        targets: &[
            (Always, Key(K::Meeting)),
            (Always, Key(K::MeetingByInviteCode)),
            (Always, Key(K::MeetingParticipants)),
            (Always, Key(K::MeetingParticipantCount)),
            (Always, Key(K::RecentChats)),
            (Always, Key(K::MeetingChatCount)),
            (Always, Key(K::MeetingRecording)),
            (Always, Key(K::MeetingRecordings)),
            (Always, Key(K::MeetingMember)),
            (Always, Key(K::UserMeetings)),
            (Always, Key(K::UserMeetingCount)),
            (Always, Key(K::LiveMeetings)),
            (Always, Key(K::ScheduledMeetings)),
            (Always, Key(K::UserParticipations)),
            (Always, T(TagKind::Meeting)),
        ],
    },
    // SPEC §5 also lists `meeting`: the meeting read shows the active count.
    // That read is composed of the `meeting` value (row and host, which a
    // join does not change) and `meetingParticipantCount` (deleted here), so
    // it is fresh after a join without reloading the row and the host.
    Rule {
        write: WriteKind::ParticipantJoinLeave,
        targets: &[
            // Not in SPEC: the joining or leaving user's access check.
            (Always, Key(K::MeetingMember)),
            (Always, Key(K::MeetingParticipants)),
            (Always, Key(K::MeetingParticipantCount)),
            (Always, Key(K::UserParticipations)),
            (Always, Key(K::LiveMeetings)),
        ],
    },
    // The window is appended to, not deleted: a busy meeting would
    // otherwise reload its last 50 on every post.
    Rule {
        write: WriteKind::ChatMessage,
        targets: &[
            (Always, Append(K::RecentChats)),
            (Always, Key(K::MeetingChatCount)),
        ],
    },
    Rule {
        write: WriteKind::RecordingStatusChange,
        targets: &[
            (Always, Key(K::MeetingRecording)),
            (Always, Key(K::MeetingRecordings)),
        ],
    },
];

/// The entities a write touched; filled by the typed constructors only.
#[derive(Debug, Default)]
struct Subject {
    user: Option<Uuid>,
    emails: Vec<String>,
    host: Option<Uuid>,
    meeting: Option<Uuid>,
    invite_codes: Vec<String>,
    participants: Vec<Uuid>,
    status_changed: bool,
    created_live: bool,
    entry: Option<WindowEntry>,
}

/// The concrete keys and tags one write makes stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub write: WriteKind,
    pub keys: BTreeSet<CacheKey>,
    pub tags: BTreeSet<Tag>,
    /// Applied after the deletes. Absent in rows of binaries that predate
    /// it (they never append).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub appends: BTreeSet<WindowAppend>,
}

impl Invalidation {
    pub fn user_create(email: &str) -> Self {
        Self::expand(
            WriteKind::UserCreate,
            Subject {
                emails: vec![email.to_owned()],
                ..Subject::default()
            },
        )
    }

    pub fn user_profile_update(user: Uuid, old_email: &str, new_email: &str) -> Self {
        Self::expand(
            WriteKind::UserProfileUpdate,
            Subject {
                user: Some(user),
                emails: vec![old_email.to_owned(), new_email.to_owned()],
                ..Subject::default()
            },
        )
    }

    pub fn meeting_create(host: Uuid, invite_code: &str, created_live: bool) -> Self {
        Self::expand(
            WriteKind::MeetingCreate,
            Subject {
                host: Some(host),
                invite_codes: vec![invite_code.to_owned()],
                created_live,
                ..Subject::default()
            },
        )
    }

    /// `invite_codes`: the old and the new code when it changed, else the one.
    pub fn meeting_update(
        meeting: Uuid,
        host: Uuid,
        invite_codes: &[&str],
        status_changed: bool,
        participants: &[Uuid],
    ) -> Self {
        Self::expand(
            WriteKind::MeetingUpdate,
            Subject {
                meeting: Some(meeting),
                host: Some(host),
                invite_codes: invite_codes.iter().map(|c| (*c).to_owned()).collect(),
                participants: participants.to_vec(),
                status_changed,
                ..Subject::default()
            },
        )
    }

    pub fn meeting_delete(
        meeting: Uuid,
        host: Uuid,
        invite_code: &str,
        participants: &[Uuid],
    ) -> Self {
        Self::expand(
            WriteKind::MeetingDelete,
            Subject {
                meeting: Some(meeting),
                host: Some(host),
                invite_codes: vec![invite_code.to_owned()],
                participants: participants.to_vec(),
                ..Subject::default()
            },
        )
    }

    pub fn participant_join_leave(meeting: Uuid, user: Uuid) -> Self {
        Self::expand(
            WriteKind::ParticipantJoinLeave,
            Subject {
                meeting: Some(meeting),
                participants: vec![user],
                ..Subject::default()
            },
        )
    }

    /// A message posted (`entry`: appended to a cached window) or a chat
    /// change without one entry to append (`None`: the meeting's messages
    /// were deleted; the window is deleted).
    pub fn chat_message(meeting: Uuid, entry: Option<WindowEntry>) -> Self {
        Self::expand(
            WriteKind::ChatMessage,
            Subject {
                meeting: Some(meeting),
                entry,
                ..Subject::default()
            },
        )
    }

    pub fn recording_status_change(meeting: Uuid) -> Self {
        Self::expand(
            WriteKind::RecordingStatusChange,
            Subject {
                meeting: Some(meeting),
                ..Subject::default()
            },
        )
    }

    /// Everything in `other` is invalidated too (one write touching several
    /// entities records one outbox entry).
    pub fn merge(mut self, other: Invalidation) -> Self {
        self.keys.extend(other.keys);
        self.tags.extend(other.tags);
        self.appends.extend(other.appends);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tags.is_empty() && self.appends.is_empty()
    }

    fn expand(write: WriteKind, s: Subject) -> Self {
        let mut keys = BTreeSet::new();
        let mut tags = BTreeSet::new();
        let mut appends = BTreeSet::new();
        let targets = RULES
            .iter()
            .filter(|rule| rule.write == write)
            .flat_map(|rule| rule.targets.iter());
        for (cond, target) in targets {
            let applies = match cond {
                Always => true,
                StatusChanged => s.status_changed,
                CreatedLive => s.created_live,
            };
            if !applies {
                continue;
            }
            match *target {
                Key(name) => keys.extend(concrete_keys(name, &s)),
                Append(name) => match &s.entry {
                    Some(entry) => appends.extend(concrete_keys(name, &s).into_iter().map(|key| {
                        WindowAppend {
                            key,
                            limit: RECENT_CHATS_LIMIT,
                            entry: entry.clone(),
                        }
                    })),
                    None => keys.extend(concrete_keys(name, &s)),
                },
                T(TagKind::User) => tags.extend(s.user.map(Tag::user)),
                T(TagKind::Meeting) => tags.extend(s.meeting.map(Tag::meeting)),
            }
        }
        Self {
            write,
            keys,
            tags,
            appends,
        }
    }
}

fn concrete_keys(name: KeyName, s: &Subject) -> Vec<CacheKey> {
    let meeting = |f: fn(Uuid) -> CacheKey| s.meeting.map(f).into_iter().collect::<Vec<_>>();
    let host = |f: fn(Uuid) -> CacheKey| s.host.map(f).into_iter().collect::<Vec<_>>();
    match name {
        K::User => s.user.map(CacheKey::user).into_iter().collect(),
        K::UserByEmail => s
            .emails
            .iter()
            .map(|e| CacheKey::user_by_email(e))
            .collect(),
        K::UserMeetings => host(CacheKey::user_meetings),
        K::UserMeetingCount => host(CacheKey::user_meeting_count),
        K::UserParticipations => s
            .participants
            .iter()
            .map(|p| CacheKey::user_participations(*p))
            .collect(),
        K::Meeting => meeting(CacheKey::meeting),
        K::MeetingByInviteCode => s
            .invite_codes
            .iter()
            .map(|c| CacheKey::meeting_by_invite_code(c))
            .collect(),
        K::LiveMeetings => vec![CacheKey::live_meetings()],
        K::ScheduledMeetings => vec![CacheKey::scheduled_meetings()],
        K::MeetingParticipants => meeting(CacheKey::meeting_participants),
        K::MeetingParticipantCount => meeting(CacheKey::meeting_participant_count),
        K::RecentChats => s
            .meeting
            .map(|m| CacheKey::recent_chats(m, RECENT_CHATS_LIMIT))
            .into_iter()
            .collect(),
        K::MeetingChatCount => meeting(CacheKey::meeting_chat_count),
        K::MeetingRecording => meeting(CacheKey::meeting_recording),
        K::MeetingRecordings => meeting(CacheKey::meeting_recordings),
        // The participants' own checks; others' (strangers', the host's)
        // are found through the meeting's tag.
        K::MeetingMember => s
            .meeting
            .into_iter()
            .flat_map(|m| {
                s.participants
                    .iter()
                    .map(move |p| CacheKey::meeting_member(m, *p))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid, Uuid) {
        (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            Uuid::from_u128(4),
        )
    }

    fn set<I: IntoIterator<Item = CacheKey>>(keys: I) -> BTreeSet<CacheKey> {
        keys.into_iter().collect()
    }

    #[test]
    fn every_write_kind_has_exactly_one_row() {
        use WriteKind::*;
        for kind in [
            UserCreate,
            UserProfileUpdate,
            MeetingCreate,
            MeetingUpdate,
            MeetingDelete,
            ParticipantJoinLeave,
            ChatMessage,
            RecordingStatusChange,
        ] {
            assert_eq!(
                RULES.iter().filter(|r| r.write == kind).count(),
                1,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn row_user_create() {
        let inv = Invalidation::user_create("New@x.io");
        assert_eq!(inv.keys, set([CacheKey::user_by_email("new@x.io")]));
        assert!(inv.tags.is_empty());
    }

    #[test]
    fn row_user_profile_update() {
        let (user, ..) = ids();
        let inv = Invalidation::user_profile_update(user, "Old@x.io", "new@x.io");
        assert_eq!(
            inv.keys,
            set([
                CacheKey::user(user),
                CacheKey::user_by_email("old@x.io"),
                CacheKey::user_by_email("new@x.io"),
            ])
        );
        // Meeting host, participant lists, recent chats and the live/scheduled
        // lists show the user but cache only its id: nothing else to delete.
        assert!(inv.tags.is_empty());
    }

    #[test]
    fn row_meeting_create() {
        let (host, ..) = ids();
        let scheduled = Invalidation::meeting_create(host, "code", false);
        assert_eq!(
            scheduled.keys,
            set([
                CacheKey::user_meetings(host),
                CacheKey::user_meeting_count(host),
                CacheKey::scheduled_meetings(),
                CacheKey::meeting_by_invite_code("code"),
            ])
        );
        let live = Invalidation::meeting_create(host, "code", true);
        assert!(live.keys.contains(&CacheKey::live_meetings()));
        assert!(!scheduled.keys.contains(&CacheKey::live_meetings()));
        assert!(scheduled.tags.is_empty());
    }

    #[test]
    fn row_meeting_update() {
        let (host, meeting, p1, p2) = ids();
        let plain = Invalidation::meeting_update(meeting, host, &["old", "new"], false, &[p1, p2]);
        let base = set([
            CacheKey::meeting(meeting),
            CacheKey::meeting_by_invite_code("old"),
            CacheKey::meeting_by_invite_code("new"),
            CacheKey::user_meetings(host),
            CacheKey::live_meetings(),
            CacheKey::scheduled_meetings(),
            CacheKey::user_participations(p1),
            CacheKey::user_participations(p2),
        ]);
        assert_eq!(plain.keys, base);

        let status = Invalidation::meeting_update(meeting, host, &["old"], true, &[p1, p2]);
        let mut expected = base;
        expected.remove(&CacheKey::meeting_by_invite_code("new"));
        expected.insert(CacheKey::user_meeting_count(host));
        // Ending marks every participant as left: their access checks too.
        expected.insert(CacheKey::meeting_member(meeting, p1));
        expected.insert(CacheKey::meeting_member(meeting, p2));
        assert_eq!(status.keys, expected);
    }

    #[test]
    fn row_meeting_delete() {
        let (host, meeting, p1, _) = ids();
        let inv = Invalidation::meeting_delete(meeting, host, "code", &[p1]);
        assert_eq!(
            inv.keys,
            set([
                CacheKey::meeting(meeting),
                CacheKey::meeting_by_invite_code("code"),
                CacheKey::meeting_participants(meeting),
                CacheKey::meeting_participant_count(meeting),
                CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT),
                CacheKey::meeting_chat_count(meeting),
                CacheKey::meeting_recording(meeting),
                CacheKey::meeting_recordings(meeting),
                CacheKey::meeting_member(meeting, p1),
                CacheKey::user_meetings(host),
                CacheKey::user_meeting_count(host),
                CacheKey::live_meetings(),
                CacheKey::scheduled_meetings(),
                CacheKey::user_participations(p1),
            ])
        );
        assert_eq!(inv.tags, [Tag::meeting(meeting)].into());
    }

    #[test]
    fn row_participant_join_leave() {
        let (user, meeting, ..) = ids();
        let inv = Invalidation::participant_join_leave(meeting, user);
        assert_eq!(
            inv.keys,
            set([
                CacheKey::meeting_member(meeting, user),
                CacheKey::meeting_participants(meeting),
                CacheKey::meeting_participant_count(meeting),
                CacheKey::user_participations(user),
                CacheKey::live_meetings(),
            ])
        );
        // The meeting read takes its count from the count key, not `meeting`.
        assert!(!inv.keys.contains(&CacheKey::meeting(meeting)));
        assert!(inv.tags.is_empty());
    }

    #[test]
    fn row_chat_message() {
        let (_, meeting, ..) = ids();
        let entry = WindowEntry {
            sent_at: "2026-01-01T00:00:00.000000Z".to_owned(),
            id: "m1".to_owned(),
            json: "{}".to_owned(),
        };
        let posted = Invalidation::chat_message(meeting, Some(entry.clone()));
        // The count is deleted; the window is appended to, not deleted.
        assert_eq!(posted.keys, set([CacheKey::meeting_chat_count(meeting)]));
        assert_eq!(
            posted.appends,
            [WindowAppend {
                key: CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT),
                limit: RECENT_CHATS_LIMIT,
                entry,
            }]
            .into()
        );
        // Without an entry (the meeting's messages deleted) both go.
        let deleted = Invalidation::chat_message(meeting, None);
        assert_eq!(
            deleted.keys,
            set([
                CacheKey::recent_chats(meeting, RECENT_CHATS_LIMIT),
                CacheKey::meeting_chat_count(meeting),
            ])
        );
        assert!(deleted.appends.is_empty());
    }

    /// Outbox rows written before `appends` existed still decode.
    #[test]
    fn rows_without_appends_decode() {
        let old = r#"{"write":"ChatMessage","keys":[],"tags":[]}"#;
        let inv: Invalidation = serde_json::from_str(old).unwrap();
        assert!(inv.appends.is_empty());
    }

    #[test]
    fn row_recording_status_change() {
        let (_, meeting, ..) = ids();
        let inv = Invalidation::recording_status_change(meeting);
        assert_eq!(
            inv.keys,
            set([
                CacheKey::meeting_recording(meeting),
                CacheKey::meeting_recordings(meeting),
            ])
        );
        assert!(inv.tags.is_empty());
    }
}
