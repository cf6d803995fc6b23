//! Input rules the service enforces itself, whoever calls it (the gateway
//! validates the same rules first, with field-level messages for HTTP).

use uuid::Uuid;

use crate::error::UserError;

fn invalid(msg: impl Into<String>) -> UserError {
    UserError::InvalidArgument(msg.into())
}

pub fn id(raw: &str) -> Result<Uuid, UserError> {
    Uuid::parse_str(raw).map_err(|_| invalid(format!("id: not a valid uuid: {raw:?}")))
}

pub fn name(raw: &str) -> Result<String, UserError> {
    let name = raw.trim();
    let len = name.chars().count();
    if (1..=100).contains(&len) {
        Ok(name.to_owned())
    } else {
        Err(invalid("name: must be 1 to 100 characters"))
    }
}

/// Trimmed; case is kept for display, uniqueness ignores it.
pub fn email(raw: &str) -> Result<String, UserError> {
    let email = raw.trim();
    let (local, domain) = email.split_once('@').unwrap_or(("", ""));
    let ok = email.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email.to_owned())
    } else {
        Err(invalid("email: not a valid email address"))
    }
}

pub fn image(raw: &str) -> Result<String, UserError> {
    let ok = raw.len() <= 2048
        && url::Url::parse(raw)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            "image: must be an http(s) URL of at most 2048 characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Ann ").unwrap(), "Ann");
        assert!(name("   ").is_err());
        assert!(name(&"é".repeat(100)).is_ok());
        assert!(name(&"é".repeat(101)).is_err());
    }

    #[test]
    fn emails_need_one_at_and_no_spaces() {
        assert!(email("a@b.io").is_ok());
        assert!(email("a b@c.io").is_err());
        assert!(email("ab.io").is_err());
        assert!(email("a@b@c").is_err());
    }

    #[test]
    fn images_are_http_urls() {
        assert!(image("https://x.io/a.png").is_ok());
        assert!(image("ftp://x.io/a.png").is_err());
        assert!(image(&format!("https://x.io/{}", "a".repeat(2040))).is_err());
    }
}
