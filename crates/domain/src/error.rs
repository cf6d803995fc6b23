/// A value that breaks a domain rule. Displays as `field: problem`, the
/// message both the HTTP API and the gRPC services answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{field}: must be {min} to {max} characters")]
    Length {
        field: &'static str,
        min: usize,
        max: usize,
    },
    #[error("{field}: must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    /// NUL among them: Postgres refuses it in text, so letting it through
    /// turns bad input into a 500.
    #[error("{field}: must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("{field}: not a valid uuid")]
    Uuid { field: &'static str },
    #[error("{field}: not a valid email address")]
    Email { field: &'static str },
    #[error("{field}: must be an absolute http(s) URL")]
    WebUrl { field: &'static str },
    #[error(
        "{field}: must be {len} characters of A-Z, a-z, 0-9, '_' or '-'",
        len = crate::invite_code::LEN
    )]
    InviteCode { field: &'static str },
    #[error("{field}: must be 1 to 255 visible ASCII characters")]
    IdempotencyKey { field: &'static str },
    #[error("{field}: must be an RFC 3339 timestamp, e.g. 2030-01-31T12:00:00Z")]
    Rfc3339 { field: &'static str },
    #[error("{field}: not a valid timestamp")]
    Timestamp { field: &'static str },
    #[error("{field}: must not be in the past")]
    InPast { field: &'static str },
    #[error("{field}: must be an integer from {min} to {max}")]
    Range {
        field: &'static str,
        min: u64,
        max: u64,
    },
}

impl RuleError {
    /// The field the error is about, as the HTTP API names it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Length { field, .. }
            | Self::TooLong { field, .. }
            | Self::ControlCharacter { field }
            | Self::Uuid { field }
            | Self::Email { field }
            | Self::WebUrl { field }
            | Self::InviteCode { field }
            | Self::IdempotencyKey { field }
            | Self::Rfc3339 { field }
            | Self::Timestamp { field }
            | Self::InPast { field }
            | Self::Range { field, .. } => field,
        }
    }
}
