//! A meeting's fields: title, description, schedule.

use chrono::{DateTime, Duration, Utc};

use crate::RuleError;
use crate::text::{Lines, TextRule};

pub const TITLE: TextRule = TextRule {
    field: "title",
    min_chars: 1,
    max_chars: 200,
    lines: Lines::Single,
};
/// Line breaks are content here; NUL and other control characters are not.
pub const DESCRIPTION: TextRule = TextRule {
    field: "description",
    min_chars: 0,
    max_chars: 2000,
    lines: Lines::Multi,
};
/// A `scheduledAt` this far behind the clock still counts as "now" (client
/// clocks and request latency); anything older is in the past.
pub const PAST_TOLERANCE: Duration = Duration::seconds(60);

/// Trimmed, 1..=200 characters, one line.
pub fn title(raw: &str) -> Result<String, RuleError> {
    TITLE.check(raw).map(str::to_owned)
}

/// Trimmed, at most 2000 characters; an empty description is none.
pub fn description(raw: &str) -> Result<Option<String>, RuleError> {
    let text = DESCRIPTION.check(raw)?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// `at`, unless it is more than [`PAST_TOLERANCE`] before `now`.
pub fn not_in_past(
    field: &'static str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, RuleError> {
    if at < now - PAST_TOLERANCE {
        Err(RuleError::InPast { field })
    } else {
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        assert_eq!(title("  Standup ").unwrap(), "Standup");
        assert!(title(&"é".repeat(200)).is_ok());
        assert_eq!(
            title(&"a".repeat(201)).unwrap_err().to_string(),
            "title: must be 1 to 200 characters"
        );
        assert!(title("   ").is_err());
        assert_eq!(
            title("a\u{7}b").unwrap_err().to_string(),
            "title: must not contain control characters"
        );
    }

    #[test]
    fn descriptions_may_be_empty_or_multi_line_but_not_huge_or_nul() {
        assert_eq!(description("  ").unwrap(), None);
        assert_eq!(description(" x ").unwrap().as_deref(), Some("x"));
        assert_eq!(
            description("agenda:\n\t1. hi").unwrap().as_deref(),
            Some("agenda:\n\t1. hi")
        );
        assert!(description(&"é".repeat(2000)).is_ok());
        assert_eq!(
            description(&"a".repeat(2001)).unwrap_err().to_string(),
            "description: must be at most 2000 characters"
        );
        assert_eq!(
            description("a\u{0}").unwrap_err().to_string(),
            "description: must not contain control characters"
        );
    }

    #[test]
    fn the_past_starts_a_minute_ago() {
        let now = Utc::now();
        assert!(not_in_past("scheduledAt", now, now).is_ok());
        assert!(not_in_past("scheduledAt", now - Duration::seconds(60), now).is_ok());
        assert_eq!(
            not_in_past("scheduledAt", now - Duration::seconds(61), now)
                .unwrap_err()
                .to_string(),
            "scheduledAt: must not be in the past"
        );
    }
}
