//! Invite code generation. The format (length, alphabet) is a domain rule
//! shared with the gateway: `huddle_domain::invite_code`.
//!
//! 12 characters of a 64-symbol alphabet is 72 bits from the OS CSPRNG, so
//! guessing a live code is hopeless; uniqueness is still enforced by the
//! database (a collision is retried with a fresh code).

use huddle_domain::invite_code::{ALPHABET, LEN};
use rand::{Rng, TryRngCore, rngs::OsRng};

/// A fresh code from the operating system's CSPRNG.
pub fn generate() -> String {
    let mut rng = OsRng.unwrap_err();
    (0..LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_domain::invite_code::is_well_formed;

    #[test]
    fn generated_codes_are_well_formed_and_distinct() {
        let codes: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(codes.len(), 1000);
        assert!(codes.iter().all(|c| is_well_formed(c)));
    }
}
