//! The meeting service's errors and their one mapping onto gRPC statuses.

use huddle_common::ErrorCode;
use huddle_db::DbError;

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
    /// user-service failed or is unreachable.
    #[error("user service: {0}")]
    Users(tonic::Status),
    /// Test-only fault injection (see `Failpoints`).
    #[error("failpoint: {0}")]
    Failpoint(&'static str),
}

impl From<diesel::result::Error> for MeetingError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<MeetingError> for tonic::Status {
    fn from(e: MeetingError) -> Self {
        let code = match &e {
            MeetingError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            MeetingError::NotFound | MeetingError::InvalidInviteCode => ErrorCode::NotFound,
            MeetingError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            MeetingError::Conflict(_) => ErrorCode::Conflict,
            MeetingError::Db(DbError::NotFound) => ErrorCode::NotFound,
            MeetingError::Db(DbError::Unique { .. }) => ErrorCode::Conflict,
            MeetingError::Db(DbError::Unavailable(_)) => ErrorCode::Unavailable,
            MeetingError::Db(DbError::Query(_)) => ErrorCode::Internal,
            MeetingError::Users(_) | MeetingError::Failpoint(_) => ErrorCode::Unavailable,
        };
        if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
            tracing::error!(error = %e, "request failed");
            // Details stay in the log; callers get the category only.
            return code.status(code.as_str().to_lowercase().replace('_', " "));
        }
        code.status(e.to_string())
    }
}
