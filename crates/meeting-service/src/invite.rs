//! Invite codes: unguessable, URL-safe, matched exactly.
//!
//! 12 characters of a 64-symbol alphabet is 72 bits from the OS CSPRNG, so
//! guessing a live code is hopeless; uniqueness is still enforced by the
//! database (a collision is retried with a fresh code).

use rand::{Rng, TryRngCore, rngs::OsRng};

pub const LEN: usize = 12;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A fresh code from the operating system's CSPRNG.
pub fn generate() -> String {
    let mut rng = OsRng.unwrap_err();
    (0..LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Exactly [`LEN`] characters of the alphabet. Anything else is refused
/// before it reaches Redis or Postgres.
pub fn is_well_formed(code: &str) -> bool {
    code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_well_formed_and_distinct() {
        let codes: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(codes.len(), 1000);
        assert!(codes.iter().all(|c| is_well_formed(c)));
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "short",
            "abcdefghijk",
            "abcdefghijklm",
            "abcdefghijk*",
            "abcdefghijk:",
            "abcdefghijk ",
            "abcdéfghijk",
            "abcdefghij%2",
        ] {
            assert!(!is_well_formed(bad), "{bad:?}");
        }
        assert!(is_well_formed("AZaz09-_AZaz"));
    }
}
