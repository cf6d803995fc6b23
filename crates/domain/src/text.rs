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
    /// The trimmed value, if it follows the rule.
    pub fn check<'a>(&self, raw: &'a str) -> Result<&'a str, RuleError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars < self.min_chars || chars > self.max_chars {
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
        no_control_characters(self.field, text, self.lines)?;
        Ok(text)
    }
}

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
        assert_eq!(RULE.check("  abc \n").unwrap(), "abc");
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
