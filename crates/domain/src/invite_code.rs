//! Invite codes: unguessable, URL-safe, matched exactly (case-sensitive).
//!
//! 12 characters of a 64-symbol alphabet is 72 bits; meeting-service draws
//! them from the OS CSPRNG. Anything else is refused before it reaches Redis
//! (where it becomes part of a key) or Postgres.

use crate::RuleError;

pub const LEN: usize = 12;
pub const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// As the HTTP API names it.
pub const FIELD: &str = "inviteCode";

/// Exactly [`LEN`] characters of [`ALPHABET`].
pub fn is_well_formed(code: &str) -> bool {
    code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))
}

/// The code as given (never trimmed or case-folded: it is matched exactly).
pub fn parse(raw: &str) -> Result<&str, RuleError> {
    if is_well_formed(raw) {
        Ok(raw)
    } else {
        Err(RuleError::InviteCode { field: FIELD })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn codes_are_twelve_url_safe_characters() {
        assert_eq!(parse("AZaz09-_AZaz").unwrap(), "AZaz09-_AZaz");
        for bad in [
            "",
            "short",
            "abcdefghijk",
            "abcdefghijklm",
            "abcdefghijk*",
            "abcdefghijk:",
            "abcdefghijk ",
            " abcdefghijk",
            "abcdéfghijk",
            "abcdefghij%2",
            "abcdefghijk\u{0}",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().to_string(),
                "inviteCode: must be 12 characters of A-Z, a-z, 0-9, '_' or '-'",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_alphabet_has_64_distinct_url_safe_symbols() {
        let mut symbols = ALPHABET.to_vec();
        symbols.sort_unstable();
        symbols.dedup();
        assert_eq!(symbols.len(), 64);
        assert!(
            symbols
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        );
    }
}
