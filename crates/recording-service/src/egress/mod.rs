//! From a verified webhook to the row it implies, and how a row moves:
//! status only forward (PROCESSING → READY | FAILED), so any order of
//! deliveries, replays included, ends in the same row.

use chrono::{DateTime, Utc};
use huddle_domain::text::{Lines, TextRule};
use livekit_protocol::{EgressStatus, WebhookEvent, egress_info};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::RecordingError;

const EGRESS_ID: TextRule = TextRule {
    field: "egressInfo.egressId",
    min_chars: 1,
    max_chars: 200,
    lines: Lines::Single,
};
const FILE_URL: TextRule = TextRule {
    field: "egressInfo.fileResults.location",
    min_chars: 1,
    max_chars: 4096,
    lines: Lines::Single,
};
/// An egress id a caller names (`…/recordings/{egressId}/stop`).
pub fn egress_id(raw: &str) -> Result<&str, RecordingError> {
    const RULE: TextRule = TextRule {
        field: "egressId",
        ..EGRESS_ID
    };
    Ok(RULE.check(raw)?)
}

/// LiveKit's error texts are kept, cut to this many characters.
const MAX_ERROR_CHARS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Processing,
    Ready,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        match raw {
            "PROCESSING" => Some(Self::Processing),
            "READY" => Some(Self::Ready),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }

    /// SPEC §3's mapping of LiveKit's egress statuses.
    fn from_egress(status: EgressStatus) -> Self {
        match status {
            EgressStatus::EgressStarting
            | EgressStatus::EgressActive
            | EgressStatus::EgressEnding => Self::Processing,
            EgressStatus::EgressComplete => Self::Ready,
            EgressStatus::EgressFailed
            | EgressStatus::EgressAborted
            | EgressStatus::EgressLimitReached => Self::Failed,
        }
    }

    fn is_final(self) -> bool {
        self != Self::Processing
    }
}

/// The mutable part of a recording row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub file_url: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// What one egress webhook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub meeting: Uuid,
    pub egress_id: String,
    pub status: Status,
    pub file_url: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub error: Option<String>,
    /// `None` while LiveKit has not set it.
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The webhook's own time: a first row's `started_at` until LiveKit's.
    pub sent_at: DateTime<Utc>,
}

/// What a verified webhook is to this service.
#[derive(Debug)]
pub enum Parsed {
    Egress(Box<Seen>),
    /// Not an egress event.
    OtherEvent,
    /// The room is not a meeting id.
    UnknownRoom(String),
}

pub fn parse(event: &WebhookEvent) -> Result<Parsed, RecordingError> {
    if !matches!(
        event.event.as_str(),
        "egress_started" | "egress_updated" | "egress_ended"
    ) {
        return Ok(Parsed::OtherEvent);
    }
    let info = event
        .egress_info
        .as_ref()
        .ok_or_else(|| bad("egressInfo: required for egress events"))?;
    let Ok(meeting) = Uuid::parse_str(&info.room_name) else {
        return Ok(Parsed::UnknownRoom(info.room_name.clone()));
    };
    let egress_id = EGRESS_ID.check(&info.egress_id)?.to_owned();
    let status = EgressStatus::try_from(info.status)
        .map(Status::from_egress)
        .map_err(|_| bad(format!("egressInfo.status: unknown value {}", info.status)))?;
    #[allow(deprecated)] // LiveKit before file_results: the single `file`.
    let file = info.file_results.first().or(match &info.result {
        Some(egress_info::Result::File(file)) => Some(file),
        _ => None,
    });
    let (file_url, duration_seconds, file_size_bytes) = match file {
        None => (None, None, None),
        Some(f) => (
            (!f.location.is_empty())
                .then(|| FILE_URL.check(&f.location).map(str::to_owned))
                .transpose()?,
            positive("egressInfo.fileResults.duration", f.duration)?.map(ns_to_seconds),
            positive("egressInfo.fileResults.size", f.size)?,
        ),
    };
    Ok(Parsed::Egress(Box::new(Seen {
        meeting,
        egress_id,
        status,
        file_url,
        duration_seconds,
        file_size_bytes,
        error: error_text(&info.error),
        started_at: instant_ns(info.started_at),
        ended_at: instant_ns(info.ended_at),
        sent_at: DateTime::from_timestamp(event.created_at, 0)
            .filter(|_| event.created_at > 0)
            .unwrap_or_else(Utc::now),
    })))
}

/// The first row of an egress.
pub fn first_state(seen: &Seen) -> State {
    State {
        status: seen.status,
        file_url: seen.file_url.clone(),
        duration_seconds: seen.duration_seconds,
        file_size_bytes: seen.file_size_bytes,
        error: seen.error.clone(),
        started_at: seen.started_at.unwrap_or(seen.sent_at),
        ended_at: seen.ended_at,
    }
}

/// The row after `seen`. A later status takes over (keeping what it does
/// not say); the same status only fills gaps; an earlier status, or another
/// final status once one is set, changes nothing. So the result depends on
/// which webhooks arrived, not on their order or how often.
pub fn merge(current: &State, seen: &Seen) -> State {
    let forward = !current.status.is_final() && seen.status.is_final();
    if forward {
        return State {
            status: seen.status,
            file_url: seen.file_url.clone().or_else(|| current.file_url.clone()),
            duration_seconds: seen.duration_seconds.or(current.duration_seconds),
            file_size_bytes: seen.file_size_bytes.or(current.file_size_bytes),
            error: seen.error.clone().or_else(|| current.error.clone()),
            started_at: seen.started_at.unwrap_or(current.started_at),
            ended_at: seen.ended_at.or(current.ended_at),
        };
    }
    if seen.status != current.status {
        return current.clone();
    }
    State {
        status: current.status,
        file_url: current.file_url.clone().or_else(|| seen.file_url.clone()),
        duration_seconds: current.duration_seconds.or(seen.duration_seconds),
        file_size_bytes: current.file_size_bytes.or(seen.file_size_bytes),
        error: current.error.clone().or_else(|| seen.error.clone()),
        started_at: seen
            .started_at
            .map_or(current.started_at, |s| s.min(current.started_at)),
        ended_at: current.ended_at.or(seen.ended_at),
    }
}

fn bad(message: impl Into<String>) -> RecordingError {
    RecordingError::InvalidArgument(message.into())
}

fn positive(field: &str, value: i64) -> Result<Option<i64>, RecordingError> {
    match value {
        v if v < 0 => Err(bad(format!("{field}: must not be negative"))),
        0 => Ok(None),
        v => Ok(Some(v)),
    }
}

/// Rounded to the nearest second.
fn ns_to_seconds(ns: i64) -> i64 {
    ns / 1_000_000_000 + i64::from(ns % 1_000_000_000 >= 500_000_000)
}

fn instant_ns(ns: i64) -> Option<DateTime<Utc>> {
    (ns > 0).then(|| DateTime::from_timestamp_nanos(ns))
}

/// LiveKit's error text, kept readable: control characters (NUL would be
/// refused by Postgres) become spaces, and it is cut to a bound.
fn error_text(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests;
