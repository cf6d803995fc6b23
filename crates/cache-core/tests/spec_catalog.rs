//! The key catalog and the rule table against the contract itself: a copy
//! of SPEC.md §4 and §5 (`tests/spec/cache-tables.md`) is parsed, and every
//! key name, key shape, TTL and required invalidation is compared with the
//! code. The unit tests in `keys.rs` and `rules.rs` pin the code's behaviour;
//! this one pins that the code is what SPEC says.
//!
//! Seen to fail with the mechanism off (the code as it was): it named the
//! missing `meetingChatCount` and `meetingRecordings`, `chat message`
//! missing `meetingChatCount`, and `meeting delete` / `recording created`
//! missing the two new names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use cache_core::{CacheKey, KeyName, RULES, TagKind, Target, WriteKind};
use uuid::Uuid;

const TABLES: &str = include_str!("spec/cache-tables.md");

/// The rows of the markdown table that follows `heading`, as cells.
fn table(heading: &str) -> Vec<Vec<String>> {
    let start = TABLES.find(heading).expect("section in the SPEC copy");
    TABLES[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

const ID: Uuid = Uuid::from_u128(0x1234);
const USER: Uuid = Uuid::from_u128(0x5678);
const EMAIL: &str = "Ann@X.io";
const CODE: &str = "abc-123";

/// One key of each name, built from the sample values above. The match is
/// exhaustive, so a new key name must be added here (and to SPEC).
fn sample(name: KeyName) -> CacheKey {
    match name {
        KeyName::User => CacheKey::user(ID),
        KeyName::UserByEmail => CacheKey::user_by_email(EMAIL),
        KeyName::UserMeetings => CacheKey::user_meetings(ID),
        KeyName::UserParticipations => CacheKey::user_participations(ID),
        KeyName::UserMeetingCount => CacheKey::user_meeting_count(ID),
        KeyName::Meeting => CacheKey::meeting(ID),
        KeyName::MeetingByInviteCode => CacheKey::meeting_by_invite_code(CODE),
        KeyName::LiveMeetings => CacheKey::live_meetings(),
        KeyName::ScheduledMeetings => CacheKey::scheduled_meetings(),
        KeyName::MeetingParticipants => CacheKey::meeting_participants(ID),
        KeyName::MeetingParticipantCount => CacheKey::meeting_participant_count(ID),
        KeyName::RecentChats => CacheKey::recent_chats(ID, cache_core::RECENT_CHATS_LIMIT),
        KeyName::MeetingChatCount => CacheKey::meeting_chat_count(ID),
        KeyName::MeetingRecording => CacheKey::meeting_recording(ID),
        KeyName::MeetingRecordings => CacheKey::meeting_recordings(ID),
        KeyName::MeetingMember => CacheKey::meeting_member(ID, USER),
    }
}

/// SPEC §4, plus the keys Huddle adds and documents (a second table in the
/// same file): name → (key pattern, TTL seconds mentioned, in order).
fn spec_keys() -> BTreeMap<String, (String, Vec<u64>)> {
    table("## 4. Cache keys")
        .into_iter()
        .chain(table("## Huddle's own keys"))
        .filter(|row| !row[0].starts_with("not-found"))
        .map(|row| {
            let pattern = row[1]
                .split('`')
                .nth(1)
                .expect("key in backticks")
                .to_owned();
            let ttls = row[2]
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[1].trim_end_matches(',') == "s")
                .map(|w| w[0].parse().expect("TTL seconds"))
                .collect();
            (row[0].clone(), (pattern, ttls))
        })
        .collect()
}

#[test]
fn every_spec_key_is_in_the_catalog_with_its_shape_and_ttl() {
    let spec = spec_keys();
    let code: BTreeSet<&str> = KeyName::ALL.iter().map(|n| n.as_str()).collect();
    let spec_names: BTreeSet<&str> = spec.keys().map(String::as_str).collect();
    assert_eq!(code, spec_names, "key names: code vs SPEC §4");

    let mut wrong = Vec::new();
    for name in KeyName::ALL {
        let (pattern, ttls) = &spec[name.as_str()];
        let expected = pattern
            .replace("{id}", &ID.to_string())
            .replace("{normalized email}", &cache_core::normalize_email(EMAIL))
            .replace("{code}", CODE)
            .replace("{user}", &USER.to_string());
        let key = sample(name);
        if key.path() != expected {
            wrong.push(format!("{name}: key {} vs SPEC {expected}", key.path()));
        }
        let ttl = name.ttl().as_secs();
        // A value-dependent TTL (two numbers in SPEC) is chosen by the
        // reader; the base must be one of them.
        if !ttls.contains(&ttl) || (ttls.len() == 1 && ttls[0] != ttl) {
            wrong.push(format!("{name}: TTL {ttl} s vs SPEC {ttls:?}"));
        }
    }
    let (_, recording) = &spec["meetingRecording"];
    assert_eq!(
        [KeyName::recording_ttl(true), KeyName::recording_ttl(false)],
        [
            Duration::from_secs(recording[0]),
            Duration::from_secs(recording[1])
        ]
    );
    let (_, recordings) = &spec["meetingRecordings"];
    assert_eq!(
        [
            KeyName::recordings_ttl(true),
            KeyName::recordings_ttl(false)
        ],
        [
            Duration::from_secs(recordings[0]),
            Duration::from_secs(recordings[1])
        ]
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// SPEC §5's write column → the rule that implements it.
fn write_kind(spec_write: &str) -> WriteKind {
    match spec_write {
        "user profile update" => WriteKind::UserProfileUpdate,
        "meeting create" => WriteKind::MeetingCreate,
        "meeting update" => WriteKind::MeetingUpdate,
        "meeting delete" => WriteKind::MeetingDelete,
        "participant join / leave" => WriteKind::ParticipantJoinLeave,
        "chat message" => WriteKind::ChatMessage,
        "recording created / status change" => WriteKind::RecordingStatusChange,
        other => panic!("SPEC §5 has a write no rule covers: {other:?}"),
    }
}

/// Where the code knowingly covers a SPEC requirement another way; each
/// reason is stated at the rule in `rules.rs`.
const COVERED_OTHERWISE: &[(WriteKind, &str)] = &[
    // The meeting read takes its count from `meetingParticipantCount`.
    (WriteKind::ParticipantJoinLeave, "meeting"),
];

/// Rows whose tag SPEC implies ("every cached value that embeds that user")
/// but the code needs none: values outside user-service store user ids and
/// compose the cards at answer time, so `user` and `userByEmail` are every
/// value that embeds a user (stated at the rule in `rules.rs`).
const TAG_COVERED_OTHERWISE: &[WriteKind] = &[WriteKind::UserProfileUpdate];

/// The key names a row of SPEC §5 requires, and whether it requires the
/// entity's tag (values embedding the user; every key of the meeting).
fn required(
    keys_cell: &str,
    spec: &BTreeMap<String, (String, Vec<u64>)>,
) -> (BTreeSet<String>, Option<TagKind>) {
    let mut text = keys_cell.to_owned();
    let mut tag = None;
    let mut names = BTreeSet::new();
    if let Some(at) = text.find("every cached value that embeds that user") {
        // The parenthesis lists examples of values found through the tag.
        let end = text[at..].find(')').map_or(text.len(), |e| at + e + 1);
        text.replace_range(at..end, "");
        tag = Some(TagKind::User);
    }
    if text.contains("every key of that meeting") {
        tag = Some(TagKind::Meeting);
        names.extend(
            spec.iter()
                .filter(|(_, (p, _))| {
                    p.starts_with("meeting:{id}") || p.starts_with("meeting:invite:")
                })
                .map(|(n, _)| n.clone()),
        );
    }
    // `userMeetings(host)`: the parenthesis names whose key, not a key.
    for arg in ["(host)", "(user)"] {
        text = text.replace(arg, "");
    }
    if text.contains("live/scheduled lists") {
        names.extend(["liveMeetings".to_owned(), "scheduledMeetings".to_owned()]);
    }
    names.extend(
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| spec.contains_key(*w))
            .map(str::to_owned),
    );
    (names, tag)
}

#[test]
fn every_spec_invalidation_is_in_the_rules() {
    let spec = spec_keys();
    let mut missing = Vec::new();
    let rows = table("## 5. Invalidations");
    assert_eq!(rows.len(), 7, "SPEC §5 rows");
    for row in rows {
        let kind = write_kind(&row[0]);
        let rule = RULES.iter().find(|r| r.write == kind).expect("a rule");
        let has_key = |name: &str| {
            rule.targets
                .iter()
                .any(|(_, t)| matches!(t, Target::Key(k) | Target::Append(k) if k.as_str() == name))
        };
        let (names, tag) = required(&row[1], &spec);
        for name in names {
            if !has_key(&name) && !COVERED_OTHERWISE.contains(&(kind, name.as_str())) {
                missing.push(format!("{}: {name}", row[0]));
            }
        }
        if let Some(kind_needed) = tag.filter(|_| !TAG_COVERED_OTHERWISE.contains(&kind)) {
            let has_tag = rule
                .targets
                .iter()
                .any(|(_, t)| matches!(t, Target::Tag(k) if *k == kind_needed));
            if !has_tag {
                missing.push(format!("{}: tag {kind_needed:?}", row[0]));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "required by SPEC §5, not in RULES: {missing:#?}"
    );
}
