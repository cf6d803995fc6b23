//! A chat message and the history page size.

use crate::RuleError;
use crate::text::{Lines, TextRule};

/// Line breaks are content; NUL and other control characters are not.
pub const MESSAGE: TextRule = TextRule {
    field: "message",
    min_chars: 1,
    max_chars: 2000,
    lines: Lines::Multi,
};

/// `GET …/chats/history`: `limit` when absent, and its bounds.
pub const HISTORY_DEFAULT_LIMIT: u32 = 50;
pub const HISTORY_MAX_LIMIT: u32 = 100;

/// Trimmed, 1..=2000 characters.
pub fn message(raw: &str) -> Result<String, RuleError> {
    MESSAGE.check(raw).map(str::to_owned)
}

/// A history page size: absent means the default, else 1..=100.
pub fn history_limit(raw: Option<u64>) -> Result<u32, RuleError> {
    match raw {
        None => Ok(HISTORY_DEFAULT_LIMIT),
        Some(n) if (1..=u64::from(HISTORY_MAX_LIMIT)).contains(&n) => Ok(n as u32),
        Some(_) => Err(RuleError::Range {
            field: "limit",
            min: 1,
            max: u64::from(HISTORY_MAX_LIMIT),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn messages() {
        assert_eq!(message("  hi\nthere ").unwrap(), "hi\nthere");
        assert_eq!(message(&"é".repeat(2000)).unwrap().chars().count(), 2000);
        for bad in ["", "   ", "a\u{0}b", "\u{1b}[31m"] {
            assert!(message(bad).is_err(), "{bad:?}");
        }
        assert!(message(&"a".repeat(2001)).is_err());
    }

    #[test]
    fn history_limits() {
        assert_eq!(history_limit(None).unwrap(), 50);
        assert_eq!(history_limit(Some(1)).unwrap(), 1);
        assert_eq!(history_limit(Some(100)).unwrap(), 100);
        for bad in [0, 101, u64::MAX] {
            assert_eq!(
                history_limit(Some(bad)).unwrap_err().to_string(),
                "limit: must be an integer from 1 to 100"
            );
        }
    }
}
