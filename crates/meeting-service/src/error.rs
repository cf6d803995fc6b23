//! The meeting service's errors and their place in the one code table.

use huddle_common::ErrorCode;
use huddle_db::DbError;
use huddle_serve::{CrashedAfterCommit, ServiceError, db_code};

#[derive(Debug, thiserror::Error)]
pub enum MeetingError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("meeting not found")]
    NotFound,
    /// Unknown (or rotated-away) invite code; the wording is the API's.
    #[error("Invalid invite code")]
    InvalidInviteCode,
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// A state conflict, e.g. a status that cannot move that way.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Idempotency(#[from] huddle_serve::IdempotencyError),
    /// user-service failed or is unreachable.
    #[error("user service: {0}")]
    Users(#[from] tonic::Status),
    /// recording-service could not mint a room token; a status marked
    /// public (`huddle_common::is_public`) passes through as it is.
    #[error("recording service: {0}")]
    Media(tonic::Status),
    /// Test-only fault injection (`Failpoints::crash_after_commit`).
    #[error(transparent)]
    Crashed(#[from] CrashedAfterCommit),
}

impl From<diesel::result::Error> for MeetingError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl ServiceError for MeetingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound | Self::InvalidInviteCode => ErrorCode::NotFound,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Db(e) => db_code(e),
            Self::Idempotency(e) => e.code(),
            Self::Users(_) | Self::Media(_) | Self::Crashed(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<MeetingError> for tonic::Status {
    fn from(e: MeetingError) -> Self {
        match e {
            MeetingError::Media(status) if huddle_common::is_public(&status) => status,
            other => huddle_serve::to_status(other),
        }
    }
}
