//! `Idempotency-Key` (SPEC §3): the header a creating `POST` may carry so a
//! retry gets the first answer instead of writing twice.

use crate::RuleError;

pub const MAX_LEN: usize = 255;
/// As the HTTP API names it (the header).
pub const FIELD: &str = "Idempotency-Key";

/// 1..=255 visible ASCII characters (no space, no control character), as
/// given: keys are compared exactly.
pub fn key(raw: &str) -> Result<&str, RuleError> {
    let visible = raw.bytes().all(|b| b.is_ascii_graphic());
    if (1..=MAX_LEN).contains(&raw.len()) && visible {
        Ok(raw)
    } else {
        Err(RuleError::IdempotencyKey { field: FIELD })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let longest = "k".repeat(MAX_LEN);
        for good in ["a", "3f2c-9a!~", longest.as_str()] {
            assert_eq!(key(good).unwrap(), good);
        }
        let too_long = "k".repeat(MAX_LEN + 1);
        for bad in ["", " ", "a b", "tab\there", "é", too_long.as_str()] {
            assert_eq!(
                key(bad).unwrap_err().to_string(),
                "Idempotency-Key: must be 1 to 255 visible ASCII characters",
                "{bad:?}"
            );
        }
    }
}
