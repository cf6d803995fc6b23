//! The one text rule every free-text field follows: surrounding whitespace is
//! dropped, length is counted in characters (not bytes, so non-Latin text
//! gets the same room), and control characters are refused — NUL above all,
//! which Postgres rejects in `text` and which once surfaced as a 500.

use crate::RuleError;

/// Whether line breaks are part of a field's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Names, titles, addresses: no control character at all.
    Single,
    /// Descriptions, messages: `\n`, `\r` and `\t` are content; every other
    /// control character (NUL, ESC, DEL, C1…) is still refused.
    Multi,
}

/// Limits of one text field.
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// As the HTTP API names it.
    pub field: &'static str,
    /// After trimming; 0 allows an empty value.
    pub min_chars: usize,
    pub max_chars: usize,
    pub lines: Lines,
}

impl TextRule {
    /// The trimmed value, if it follows the rule. Control characters and
    /// the maximum length are checked on the raw value, the minimum on the
    /// trimmed one: exactly what the OpenAPI document says of the field
    /// (`maxLength`, [`TEXT_PATTERN`]/[`MULTILINE_PATTERN`]), so the two
    /// can never disagree.
    pub fn check<'a>(&self, raw: &'a str) -> Result<&'a str, RuleError> {
        no_control_characters(self.field, raw, self.lines)?;
        let text = trim(raw);
        let chars = text.chars().count();
        if chars < self.min_chars || raw.chars().count() > self.max_chars {
            return Err(if self.min_chars == 0 {
                RuleError::TooLong {
                    field: self.field,
                    max: self.max_chars,
                }
            } else {
                RuleError::Length {
                    field: self.field,
                    min: self.min_chars,
                    max: self.max_chars,
                }
            });
        }
        Ok(text)
    }
}

/// Surrounding whitespace as the OpenAPI pattern's `\s` sees it: Unicode
/// white space plus the byte-order mark.
pub fn trim(raw: &str) -> &str {
    raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// A single-line text field in the OpenAPI document: no control character,
/// and at least one character that is neither white space nor control.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// A multi-line text field that must not be blank: no control character
/// but tab and line breaks, and at least one character that is neither
/// white space nor control.
pub const MULTILINE_TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// A multi-line text field: no control character but tab and line breaks.
pub const MULTILINE_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// Refuses control characters (Unicode `Cc`: C0, DEL, C1), except the line
/// breaks and tab of [`Lines::Multi`] text.
pub fn no_control_characters(
    field: &'static str,
    text: &str,
    lines: Lines,
) -> Result<(), RuleError> {
    let allowed = |c: char| lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        Err(RuleError::ControlCharacter { field })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const RULE: TextRule = TextRule {
        field: "f",
        min_chars: 1,
        max_chars: 3,
        lines: Lines::Single,
    };

    #[test]
    fn trims_then_counts_characters() {
        assert_eq!(RULE.check(" ab").unwrap(), "ab");
        assert_eq!(RULE.check("\u{feff}ab").unwrap(), "ab");
        // The maximum and control characters are judged on the raw value,
        // as the OpenAPI document judges it.
        assert!(RULE.check("  abc ").is_err());
        assert!(RULE.check("ab\u{b}").is_err());
        assert_eq!(RULE.check("ééé").unwrap(), "ééé");
        assert_eq!(
            RULE.check("abcd").unwrap_err().to_string(),
            "f: must be 1 to 3 characters"
        );
        assert_eq!(
            RULE.check("  ").unwrap_err().to_string(),
            "f: must be 1 to 3 characters"
        );
        let optional = TextRule {
            min_chars: 0,
            ..RULE
        };
        assert_eq!(optional.check(" ").unwrap(), "");
        assert_eq!(
            optional.check("abcd").unwrap_err().to_string(),
            "f: must be at most 3 characters"
        );
    }

    #[test]
    fn control_characters_are_refused_inside_the_text() {
        for bad in [
            "a\u{0}b", "a\u{0}", "\u{7}", "a\u{1b}", "a\u{7f}", "a\u{85}b", "a\nb", "a\tb",
        ] {
            assert_eq!(
                RULE.check(bad).unwrap_err(),
                RuleError::ControlCharacter { field: "f" },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn multi_line_text_keeps_line_breaks_and_tabs_only() {
        let multi = TextRule {
            lines: Lines::Multi,
            ..RULE
        };
        assert_eq!(multi.check("a\nb").unwrap(), "a\nb");
        assert_eq!(multi.check("a\r\n").unwrap(), "a");
        assert_eq!(multi.check("a\tb").unwrap(), "a\tb");
        for bad in ["a\u{0}", "\u{0}", "a\u{1b}b", "a\u{7f}"] {
            assert_eq!(
                multi.check(bad).unwrap_err(),
                RuleError::ControlCharacter { field: "f" },
                "{bad:?}"
            );
        }
    }
}
