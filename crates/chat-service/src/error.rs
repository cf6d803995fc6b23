//! The chat service's errors and their place in the one code table.

use huddle_common::ErrorCode;
use huddle_db::DbError;
use huddle_domain::RuleError;
use huddle_serve::{CrashedAfterCommit, ServiceError, db_code};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidArgument(String),
    /// The meeting was deleted: its chat is gone and takes no posts.
    #[error("meeting not found")]
    MeetingGone,
    /// A message a request points at (`before`, `after`) is not in it.
    #[error("{0}")]
    NoSuchMessage(String),
    #[error("too many open streams on this chat-service instance")]
    TooManyStreams,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Idempotency(#[from] huddle_serve::IdempotencyError),
    /// user-service failed or is unreachable.
    #[error("user service: {0}")]
    Users(#[from] tonic::Status),
    /// Test-only fault injection (`Failpoints::crash_after_commit`).
    #[error(transparent)]
    Crashed(#[from] CrashedAfterCommit),
}

impl From<diesel::result::Error> for ChatError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<RuleError> for ChatError {
    fn from(e: RuleError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl ServiceError for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::MeetingGone | Self::NoSuchMessage(_) => ErrorCode::NotFound,
            Self::TooManyStreams => ErrorCode::TooManyRequests,
            Self::Db(e) => db_code(e),
            Self::Idempotency(e) => e.code(),
            Self::Users(_) | Self::Crashed(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<ChatError> for tonic::Status {
    fn from(e: ChatError) -> Self {
        huddle_serve::to_status(e)
    }
}
