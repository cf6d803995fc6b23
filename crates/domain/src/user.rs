//! A user's fields: display name, email address, profile image.

use email_address::{EmailAddress, Options};

use crate::RuleError;
use crate::text::{Lines, TextRule, no_control_characters};

pub const NAME: TextRule = TextRule {
    field: "name",
    min_chars: 1,
    max_chars: 100,
    lines: Lines::Single,
};
/// RFC 5321's limit on a forward path.
pub const EMAIL_MAX_CHARS: usize = 254;
pub const IMAGE_URL_MAX_CHARS: usize = 2048;

/// A display name, trimmed: 1..=100 characters, no control characters.
pub fn name(raw: &str) -> Result<String, RuleError> {
    NAME.check(raw).map(str::to_owned)
}

/// An email address as a user types it, trimmed: no display name
/// (`Ann <a@b.c>`), no IP-literal domain, at most 254 characters. Case is
/// kept; user-service folds it for uniqueness and cache keys.
pub fn email(raw: &str) -> Result<String, RuleError> {
    const FIELD: &str = "email";
    let trimmed = raw.trim();
    if trimmed.chars().count() > EMAIL_MAX_CHARS {
        return Err(RuleError::TooLong {
            field: FIELD,
            max: EMAIL_MAX_CHARS,
        });
    }
    no_control_characters(FIELD, trimmed, Lines::Single)?;
    let options = Options::default()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(trimmed, options)
        .map_err(|_| RuleError::Email { field: FIELD })?;
    Ok(trimmed.to_owned())
}

/// A profile image, trimmed: an absolute http(s) URL with a host, at most
/// 2048 characters. Other schemes (`javascript:`, `data:`, `file:`) are
/// refused because clients put this value straight into an `<img src>`.
/// Control characters are refused before parsing: the URL parser would
/// silently drop a tab or percent-encode a NUL, yet the raw text is what is
/// stored.
pub fn image_url(raw: &str) -> Result<String, RuleError> {
    const FIELD: &str = "image";
    if raw.chars().count() > IMAGE_URL_MAX_CHARS {
        return Err(RuleError::TooLong {
            field: FIELD,
            max: IMAGE_URL_MAX_CHARS,
        });
    }
    no_control_characters(FIELD, raw, Lines::Single)?;
    if !is_web_url(raw) {
        return Err(RuleError::WebUrl { field: FIELD });
    }
    Ok(raw.to_owned())
}

/// The image URL grammar, as the OpenAPI document states it. `is_web_url`
/// below is this pattern written out by hand; the gateway's tests hold the
/// two to the same verdicts.
pub const IMAGE_URL_PATTERN: &str = r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(:[0-9]{1,4})?(/([A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?$";

/// An absolute http(s) URL with a host name (its last label starting with
/// a letter: a numeric one would be read as an IPv4 address), an optional
/// port and a path of RFC 3986 characters (`%` only before two hex digits);
/// no query, fragment, user info or surrounding space.
pub fn is_web_url(raw: &str) -> bool {
    let Some(rest) = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok =
        |l: &&str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let last_ok = labels
        .last()
        .is_some_and(|l| l.as_bytes().first().is_some_and(u8::is_ascii_alphabetic));
    let port_ok =
        port.is_none_or(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    labels.iter().all(label_ok) && last_ok && port_ok && path_ok(path)
}

fn path_ok(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@/-".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(result: Result<String, RuleError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(name(&"a".repeat(100)).unwrap().len(), 100);
        // 100 two-byte characters are 200 bytes but still a valid name.
        assert!(name(&"é".repeat(100)).is_ok());
        // The maximum counts surrounding space too (as `maxLength` does).
        assert!(name(&format!("  {}  ", "a".repeat(100))).is_err());
        assert_eq!(
            message(name(&"a".repeat(101))),
            "name: must be 1 to 100 characters"
        );
        assert_eq!(message(name("")), "name: must be 1 to 100 characters");
        assert_eq!(message(name("   ")), "name: must be 1 to 100 characters");
        assert_eq!(
            message(name("a\u{0}b")),
            "name: must not contain control characters"
        );
        assert_eq!(
            message(name("Ada\nKing")),
            "name: must not contain control characters"
        );
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
            "a@b@c.io",
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
        for bad in [
            "ada\u{0}@example.com",
            "ada@example.com\u{0}",
            "a\u{7}@b.io",
        ] {
            assert_eq!(
                message(email(bad)),
                "email: must not contain control characters",
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
        // No surrounding space: the document's pattern has none either.
        assert!(image_url(" https://x.io/a.png ").is_err());
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
        // The URL parser accepts these (it encodes or drops the character),
        // but the raw text is what would be stored.
        for bad in [
            "https://a.io/x\u{0}",
            "https://a.io/\tx",
            "https://a.io/x\u{7f}y",
        ] {
            assert!(url::Url::parse(bad).is_ok(), "{bad:?}");
            assert_eq!(
                message(image_url(bad)),
                "image: must not contain control characters",
                "{bad:?}"
            );
        }
    }
}
