//! Every cache key and TTL of SPEC §4, defined once.
//!
//! A [`CacheKey`] is built only through the typed constructors below, so user
//! input (an email, an invite code) is always normalized and escaped: it can
//! never form a glob pattern or a key of another shape.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long "this does not exist" is remembered (SPEC §4, not-found marker).
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// The one recent-chat window the API serves (`GET …/chats`: last 50).
pub const RECENT_CHATS_LIMIT: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyName {
    User,
    UserByEmail,
    UserMeetings,
    UserParticipations,
    UserMeetingCount,
    Meeting,
    MeetingByInviteCode,
    LiveMeetings,
    ScheduledMeetings,
    MeetingParticipants,
    MeetingParticipantCount,
    RecentChats,
    MeetingChatCount,
    MeetingRecording,
    MeetingRecordings,
    /// Not in SPEC §4: whether one user may see one meeting (host,
    /// participant, or neither), so authorization never loads the
    /// participant list (issue 9 item 7).
    MeetingMember,
}

impl KeyName {
    pub const ALL: [KeyName; 16] = [
        Self::User,
        Self::UserByEmail,
        Self::UserMeetings,
        Self::UserParticipations,
        Self::UserMeetingCount,
        Self::Meeting,
        Self::MeetingByInviteCode,
        Self::LiveMeetings,
        Self::ScheduledMeetings,
        Self::MeetingParticipants,
        Self::MeetingParticipantCount,
        Self::RecentChats,
        Self::MeetingChatCount,
        Self::MeetingRecording,
        Self::MeetingRecordings,
        Self::MeetingMember,
    ];

    /// The SPEC name, used as the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::UserByEmail => "userByEmail",
            Self::UserMeetings => "userMeetings",
            Self::UserParticipations => "userParticipations",
            Self::UserMeetingCount => "userMeetingCount",
            Self::Meeting => "meeting",
            Self::MeetingByInviteCode => "meetingByInviteCode",
            Self::LiveMeetings => "liveMeetings",
            Self::ScheduledMeetings => "scheduledMeetings",
            Self::MeetingParticipants => "meetingParticipants",
            Self::MeetingParticipantCount => "meetingParticipantCount",
            Self::RecentChats => "recentChats",
            Self::MeetingChatCount => "meetingChatCount",
            Self::MeetingRecording => "meetingRecording",
            Self::MeetingRecordings => "meetingRecordings",
            Self::MeetingMember => "meetingMember",
        }
    }

    /// The base TTL (before jitter). `meetingRecording` is 600 s once the
    /// recording is final; see [`KeyName::recording_ttl`]. `meetingRecordings`
    /// is 600 s here and 30 s while any recording is PROCESSING (SPEC §4):
    /// its future reader picks with [`KeyName::recordings_ttl`].
    pub fn ttl(self) -> Duration {
        let secs = match self {
            Self::User | Self::UserByEmail => 600,
            Self::UserMeetings | Self::UserParticipations | Self::UserMeetingCount => 300,
            Self::Meeting | Self::MeetingByInviteCode | Self::ScheduledMeetings => 300,
            Self::LiveMeetings | Self::MeetingParticipantCount | Self::MeetingChatCount => 60,
            Self::MeetingMember => 60,
            Self::MeetingParticipants => 120,
            Self::RecentChats => 30,
            Self::MeetingRecording => 30,
            Self::MeetingRecordings => 600,
        };
        Duration::from_secs(secs)
    }

    /// `meetingRecording`: 30 s while PROCESSING (it is being polled and will
    /// change), 600 s once READY or FAILED.
    pub fn recording_ttl(processing: bool) -> Duration {
        Duration::from_secs(if processing { 30 } else { 600 })
    }

    /// `meetingRecordings`: 30 s while any of the list is PROCESSING, 600 s
    /// otherwise.
    pub fn recordings_ttl(any_processing: bool) -> Duration {
        Self::recording_ttl(any_processing)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cache key without the deployment prefix (the client adds that).
///
/// Serializable so a write can record it in its outbox; deserializing only
/// ever reads back what a constructor below built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey {
    name: KeyName,
    path: String,
}

impl CacheKey {
    fn new(name: KeyName, path: String) -> Self {
        Self { name, path }
    }

    pub fn name(&self) -> KeyName {
        self.name
    }

    /// The key after the prefix, e.g. `user:0b5c…`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn ttl(&self) -> Duration {
        self.name.ttl()
    }

    pub fn user(id: Uuid) -> Self {
        Self::new(KeyName::User, format!("user:{id}"))
    }

    /// Takes the raw email; it is normalized (trimmed, lowercased) and escaped.
    pub fn user_by_email(email: &str) -> Self {
        Self::new(
            KeyName::UserByEmail,
            format!("user:email:{}", escape(&normalize_email(email))),
        )
    }

    pub fn user_meetings(user: Uuid) -> Self {
        Self::new(KeyName::UserMeetings, format!("user:{user}:meetings"))
    }

    pub fn user_participations(user: Uuid) -> Self {
        Self::new(
            KeyName::UserParticipations,
            format!("user:{user}:participations"),
        )
    }

    pub fn user_meeting_count(user: Uuid) -> Self {
        Self::new(
            KeyName::UserMeetingCount,
            format!("user:{user}:meeting-count"),
        )
    }

    pub fn meeting(id: Uuid) -> Self {
        Self::new(KeyName::Meeting, format!("meeting:{id}"))
    }

    pub fn meeting_by_invite_code(code: &str) -> Self {
        Self::new(
            KeyName::MeetingByInviteCode,
            format!("meeting:invite:{}", escape(code)),
        )
    }

    pub fn live_meetings() -> Self {
        Self::new(KeyName::LiveMeetings, "meetings:live".to_owned())
    }

    pub fn scheduled_meetings() -> Self {
        Self::new(KeyName::ScheduledMeetings, "meetings:scheduled".to_owned())
    }

    pub fn meeting_participants(meeting: Uuid) -> Self {
        Self::new(
            KeyName::MeetingParticipants,
            format!("meeting:{meeting}:participants"),
        )
    }

    pub fn meeting_member(meeting: Uuid, user: Uuid) -> Self {
        Self::new(
            KeyName::MeetingMember,
            format!("meeting:{meeting}:member:{user}"),
        )
    }

    pub fn meeting_participant_count(meeting: Uuid) -> Self {
        Self::new(
            KeyName::MeetingParticipantCount,
            format!("meeting:{meeting}:participants:count"),
        )
    }

    pub fn recent_chats(meeting: Uuid, limit: u32) -> Self {
        Self::new(
            KeyName::RecentChats,
            format!("meeting:{meeting}:chats:{limit}"),
        )
    }

    pub fn meeting_chat_count(meeting: Uuid) -> Self {
        Self::new(
            KeyName::MeetingChatCount,
            format!("meeting:{meeting}:chats:count"),
        )
    }

    pub fn meeting_recordings(meeting: Uuid) -> Self {
        Self::new(
            KeyName::MeetingRecordings,
            format!("meeting:{meeting}:recordings"),
        )
    }

    pub fn meeting_recording(meeting: Uuid) -> Self {
        Self::new(
            KeyName::MeetingRecording,
            format!("meeting:{meeting}:recording"),
        )
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Emails are case-insensitive (SPEC §2); one spelling, one key.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Percent-escapes everything outside a small safe set, so that input can
/// never contain a key separator (`:`), a glob character (`*?[]\`), a space or
/// a control character once it is part of a key.
fn escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a cached value depends on, beyond its own key: a value that embeds a
/// user is tagged with that user, so one profile update finds every such value
/// without scanning the keyspace (surrogate keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TagKind {
    User,
    Meeting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    kind: TagKind,
    id: Uuid,
}

impl Tag {
    pub fn user(id: Uuid) -> Self {
        Self {
            kind: TagKind::User,
            id,
        }
    }

    pub fn meeting(id: Uuid) -> Self {
        Self {
            kind: TagKind::Meeting,
            id,
        }
    }

    pub fn kind(&self) -> TagKind {
        self.kind
    }

    /// The path of the set that indexes the tagged keys, e.g. `tag:user:…`.
    pub fn path(&self) -> String {
        let kind = match self.kind {
            TagKind::User => "user",
            TagKind::Meeting => "meeting",
        };
        format!("tag:{kind}:{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec_catalog() {
        let id = Uuid::nil();
        let cases = [
            (CacheKey::user(id), format!("user:{id}"), 600),
            (
                CacheKey::user_by_email(" Ann@Example.COM "),
                "user:email:ann@example.com".to_owned(),
                600,
            ),
            (
                CacheKey::user_meetings(id),
                format!("user:{id}:meetings"),
                300,
            ),
            (
                CacheKey::user_participations(id),
                format!("user:{id}:participations"),
                300,
            ),
            (
                CacheKey::user_meeting_count(id),
                format!("user:{id}:meeting-count"),
                300,
            ),
            (CacheKey::meeting(id), format!("meeting:{id}"), 300),
            (
                CacheKey::meeting_by_invite_code("abcDEF_123-x"),
                "meeting:invite:abcDEF_123-x".to_owned(),
                300,
            ),
            (CacheKey::live_meetings(), "meetings:live".to_owned(), 60),
            (
                CacheKey::scheduled_meetings(),
                "meetings:scheduled".to_owned(),
                300,
            ),
            (
                CacheKey::meeting_participants(id),
                format!("meeting:{id}:participants"),
                120,
            ),
            (
                CacheKey::meeting_participant_count(id),
                format!("meeting:{id}:participants:count"),
                60,
            ),
            (
                CacheKey::recent_chats(id, 50),
                format!("meeting:{id}:chats:50"),
                30,
            ),
            (
                CacheKey::meeting_chat_count(id),
                format!("meeting:{id}:chats:count"),
                60,
            ),
            (
                CacheKey::meeting_recording(id),
                format!("meeting:{id}:recording"),
                30,
            ),
            (
                CacheKey::meeting_recordings(id),
                format!("meeting:{id}:recordings"),
                600,
            ),
            (
                CacheKey::meeting_member(id, id),
                format!("meeting:{id}:member:{id}"),
                60,
            ),
        ];
        assert_eq!(cases.len(), KeyName::ALL.len());
        for (key, path, ttl) in cases {
            assert_eq!(key.path(), path);
            assert_eq!(key.ttl(), Duration::from_secs(ttl), "{}", key.name());
        }
        assert_eq!(KeyName::recording_ttl(true), Duration::from_secs(30));
        assert_eq!(KeyName::recording_ttl(false), Duration::from_secs(600));
    }

    #[test]
    fn user_input_cannot_escape_its_key() {
        let key = CacheKey::user_by_email("a*b:c?[x]\\ @y.z");
        assert_eq!(key.path(), "user:email:a%2Ab%3Ac%3F%5Bx%5D%5C%20@y.z");
        let key = CacheKey::meeting_by_invite_code("*");
        assert_eq!(key.path(), "meeting:invite:%2A");
        // Escaping is injective: the escape character itself is escaped.
        assert_ne!(
            CacheKey::meeting_by_invite_code("%2A").path(),
            CacheKey::meeting_by_invite_code("*").path()
        );
    }

    #[test]
    fn email_keys_are_case_insensitive() {
        assert_eq!(
            CacheKey::user_by_email("Bob@X.io"),
            CacheKey::user_by_email("bob@x.io")
        );
    }
}
