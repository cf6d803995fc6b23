//! Field validators. The gateway checks input before any gRPC call, so a bad
//! request never costs a backend round trip; each error names its field.

use email_address::{EmailAddress, Options};
use uuid::Uuid;

use crate::error::ApiError;

pub const NAME_MAX_CHARS: usize = 100;
/// RFC 5321's limit on a forward path.
pub const EMAIL_MAX_CHARS: usize = 254;
pub const IMAGE_URL_MAX_CHARS: usize = 2048;

/// A resource id. Braced and URN forms are accepted and canonicalised by the
/// caller through `Uuid::to_string`.
pub fn id(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "not a valid uuid"))
}

/// A display name: surrounding whitespace is dropped, then 1..=100 characters
/// (characters, not bytes, so non-Latin names get the same room).
pub fn name(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > NAME_MAX_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An email address as a user types it: no display name (`Ann <a@b.c>`), no
/// IP literal domain, at most 254 characters. Case is kept; the user service
/// normalises it for uniqueness and cache keys.
pub fn email(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > EMAIL_MAX_CHARS {
        return Err(ApiError::invalid(
            "email",
            format!("must be at most {EMAIL_MAX_CHARS} characters"),
        ));
    }
    let options = Options::default()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(trimmed, options)
        .map_err(|_| ApiError::invalid("email", "not a valid email address"))?;
    Ok(trimmed.to_owned())
}

/// A profile image: an absolute http(s) URL with a host, at most 2048
/// characters. Other schemes (`javascript:`, `data:`, `file:`) are refused
/// because clients put this value straight into an `<img src>`.
pub fn image_url(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > IMAGE_URL_MAX_CHARS {
        return Err(ApiError::invalid(
            "image",
            format!("must be at most {IMAGE_URL_MAX_CHARS} characters"),
        ));
    }
    let url = url::Url::parse(trimmed)
        .map_err(|_| ApiError::invalid("image", "must be an absolute http(s) URL"))?;
    let web_scheme = matches!(url.scheme(), "http" | "https");
    if !web_scheme || url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "image",
            "must be an absolute http(s) URL",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<String, ApiError>) -> String {
        result.unwrap_err().message
    }

    #[test]
    fn ids_must_be_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(super::id("id", &id.to_string()).unwrap(), id);
        assert_eq!(super::id("id", &id.to_string().to_uppercase()).unwrap(), id);
        for bad in ["", "42", "not-a-uuid", "by-email", "0000-0000"] {
            let err = super::id("id", bad).unwrap_err();
            assert_eq!(err.message, "id: not a valid uuid", "{bad:?}");
            assert_eq!(err.status().as_u16(), 400);
        }
    }

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(name(&"a".repeat(100)).unwrap().len(), 100);
        // 100 two-byte characters are 200 bytes but still a valid name.
        assert!(name(&"é".repeat(100)).is_ok());
        assert!(name(&format!("  {}  ", "a".repeat(100))).is_ok());
        assert_eq!(
            message(name(&"a".repeat(101))),
            "name: must be 1 to 100 characters"
        );
        assert_eq!(message(name("")), "name: must be 1 to 100 characters");
        assert_eq!(message(name("   ")), "name: must be 1 to 100 characters");
        assert!(message(name("a\u{0}b")).starts_with("name:"));
    }

    #[test]
    fn emails_need_valid_syntax_and_bounded_length() {
        assert_eq!(email("ada@example.com").unwrap(), "ada@example.com");
        assert_eq!(email(" Ada@Example.com ").unwrap(), "Ada@Example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "Ada <ada@example.com>",
            "ada@[127.0.0.1]",
            "a b@example.com",
        ] {
            assert_eq!(
                message(email(bad)),
                "email: not a valid email address",
                "{bad:?}"
            );
        }
        // 64-char local part + 189-char domain = 254 characters: accepted.
        let domain = format!(
            "{}.{}.{}.com",
            "d".repeat(63),
            "e".repeat(63),
            "f".repeat(57)
        );
        let at_limit = format!("{}@{domain}", "l".repeat(64));
        assert_eq!(at_limit.len(), 254);
        assert_eq!(email(&at_limit).unwrap(), at_limit);
        let long = format!("{}@f{domain}", "l".repeat(64));
        assert_eq!(long.len(), 255);
        assert_eq!(
            message(email(&long)),
            "email: must be at most 254 characters"
        );
    }

    #[test]
    fn images_are_absolute_http_urls_up_to_2048_characters() {
        assert!(image_url("https://cdn.example.com/a.png").is_ok());
        assert!(image_url("http://example.com").is_ok());
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(2048 - base.len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(image_url(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            message(image_url(&over)),
            "image: must be at most 2048 characters"
        );
        for bad in [
            "",
            "example.com/a.png",
            "/a.png",
            "ftp://example.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
            "https://",
        ] {
            assert_eq!(
                message(image_url(bad)),
                "image: must be an absolute http(s) URL",
                "{bad:?}"
            );
        }
    }
}
