//! Resource ids are UUIDs. Braced and URN forms are accepted; callers use the
//! parsed value (and its canonical `to_string`), never the raw input.

use uuid::Uuid;

use crate::RuleError;

pub fn parse(field: &'static str, raw: &str) -> Result<Uuid, RuleError> {
    Uuid::parse_str(raw).map_err(|_| RuleError::Uuid { field })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_must_be_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(parse("id", &id.to_string()).unwrap(), id);
        assert_eq!(parse("id", &id.to_string().to_uppercase()).unwrap(), id);
        for bad in ["", "42", "not-a-uuid", "by-email", "0000-0000", "\u{0}"] {
            assert_eq!(
                parse("callerId", bad).unwrap_err().to_string(),
                "callerId: not a valid uuid",
                "{bad:?}"
            );
        }
    }
}
