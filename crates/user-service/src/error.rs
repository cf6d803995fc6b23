//! The user service's errors and their one mapping onto gRPC statuses.

use huddle_common::ErrorCode;
use huddle_db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("user not found")]
    NotFound,
    #[error("email already registered")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] DbError),
    /// Test-only fault injection (see `Failpoints`).
    #[error("failpoint: {0}")]
    Failpoint(&'static str),
}

impl From<diesel::result::Error> for UserError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<UserError> for tonic::Status {
    fn from(e: UserError) -> Self {
        let code = match &e {
            UserError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            UserError::NotFound => ErrorCode::NotFound,
            UserError::EmailTaken => ErrorCode::Conflict,
            UserError::Db(DbError::NotFound) => ErrorCode::NotFound,
            UserError::Db(DbError::Unique { .. }) => ErrorCode::Conflict,
            UserError::Db(DbError::Unavailable(_)) => ErrorCode::Unavailable,
            UserError::Db(DbError::Query(_)) => ErrorCode::Internal,
            UserError::Failpoint(_) => ErrorCode::Unavailable,
        };
        if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
            tracing::error!(error = %e, "request failed");
            // Details stay in the log; callers get the category only.
            return code.status(code.as_str().to_lowercase().replace('_', " "));
        }
        code.status(e.to_string())
    }
}
