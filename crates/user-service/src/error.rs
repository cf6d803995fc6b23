//! The user service's errors and their place in the one code table.

use huddle_common::ErrorCode;
use huddle_db::DbError;
use huddle_serve::{CrashedAfterCommit, IdempotencyError, ServiceError, db_code};

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
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// Test-only fault injection (`Failpoints::crash_after_commit`).
    #[error(transparent)]
    Crashed(#[from] CrashedAfterCommit),
}

impl From<diesel::result::Error> for UserError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl ServiceError for UserError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound => ErrorCode::NotFound,
            Self::EmailTaken => ErrorCode::Conflict,
            Self::Db(e) => db_code(e),
            Self::Idempotency(e) => e.code(),
            Self::Crashed(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<UserError> for tonic::Status {
    fn from(e: UserError) -> Self {
        huddle_serve::to_status(e)
    }
}
