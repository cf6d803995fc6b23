//! Input rules the service enforces itself, whoever calls it (the gateway
//! checks the same rules first, with field-level messages for HTTP).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{error::MeetingError, invite};

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// A `scheduled_at` this far behind the server clock still counts as "now"
/// (client clocks and request latency); anything older is in the past.
pub const PAST_TOLERANCE: chrono::Duration = chrono::Duration::seconds(60);

fn invalid(msg: impl Into<String>) -> MeetingError {
    MeetingError::InvalidArgument(msg.into())
}

pub fn id(field: &str, raw: &str) -> Result<Uuid, MeetingError> {
    Uuid::parse_str(raw).map_err(|_| invalid(format!("{field}: not a valid uuid")))
}

pub fn title(raw: &str) -> Result<String, MeetingError> {
    let title = raw.trim();
    let len = title.chars().count();
    if !(1..=TITLE_MAX_CHARS).contains(&len) {
        return Err(invalid(format!(
            "title: must be 1 to {TITLE_MAX_CHARS} characters"
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(invalid("title: must not contain control characters"));
    }
    Ok(title.to_owned())
}

/// Trimmed; an empty description is stored as none.
pub fn description(raw: &str) -> Result<Option<String>, MeetingError> {
    let text = raw.trim();
    if text.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(invalid(format!(
            "description: must be at most {DESCRIPTION_MAX_CHARS} characters"
        )));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

pub fn timestamp(field: &str, ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, MeetingError> {
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| DateTime::<Utc>::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| invalid(format!("{field}: not a valid timestamp")))
}

pub fn not_in_past(field: &str, at: DateTime<Utc>) -> Result<DateTime<Utc>, MeetingError> {
    if at < Utc::now() - PAST_TOLERANCE {
        Err(invalid(format!("{field}: must not be in the past")))
    } else {
        Ok(at)
    }
}

pub fn invite_code(raw: &str) -> Result<&str, MeetingError> {
    if invite::is_well_formed(raw) {
        Ok(raw)
    } else {
        Err(invalid(format!(
            "inviteCode: must be {} characters of A-Z, a-z, 0-9, '_' or '-'",
            invite::LEN
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        assert_eq!(title("  Standup ").unwrap(), "Standup");
        assert!(title(&"é".repeat(200)).is_ok());
        assert!(title(&"a".repeat(201)).is_err());
        assert!(title("   ").is_err());
        assert!(title("a\u{7}b").is_err());
    }

    #[test]
    fn descriptions_may_be_empty_but_not_huge() {
        assert_eq!(description("  ").unwrap(), None);
        assert_eq!(description(" x ").unwrap().as_deref(), Some("x"));
        assert!(description(&"a".repeat(2001)).is_err());
    }

    #[test]
    fn timestamps_must_be_representable_and_not_past() {
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(timestamp("scheduledAt", &bad).is_err());
        let now = Utc::now();
        assert!(not_in_past("scheduledAt", now).is_ok());
        assert!(not_in_past("scheduledAt", now - chrono::Duration::seconds(30)).is_ok());
        let err = not_in_past("scheduledAt", now - chrono::Duration::hours(1)).unwrap_err();
        assert_eq!(err.to_string(), "scheduledAt: must not be in the past");
    }
}
