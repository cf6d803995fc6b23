//! The recording service's errors and their place in the one code table.

use huddle_common::ErrorCode;
use huddle_db::DbError;
use huddle_domain::RuleError;
use huddle_serve::{CrashedAfterCommit, ServiceError, db_code};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{0}")]
    InvalidArgument(String),
    /// The webhook's signature, key, expiry or body hash did not verify.
    #[error("webhook signature: {0}")]
    BadSignature(String),
    #[error("recording not found")]
    NotFound,
    /// LiveKit is not configured, unreachable or answered an error: said to
    /// the client as it is (no internals: the text is ours).
    #[error("{0}")]
    MediaUnavailable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Idempotency(#[from] huddle_serve::IdempotencyError),
    /// Test-only fault injection (`Failpoints::crash_after_commit`).
    #[error(transparent)]
    Crashed(#[from] CrashedAfterCommit),
}

impl From<diesel::result::Error> for RecordingError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<RuleError> for RecordingError {
    fn from(e: RuleError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl ServiceError for RecordingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::BadSignature(_) => ErrorCode::Unauthenticated,
            Self::NotFound => ErrorCode::NotFound,
            Self::MediaUnavailable(_) => ErrorCode::Unavailable,
            // Two first deliveries of one egress racing: LiveKit retries,
            // and the retry finds the row.
            Self::Db(DbError::Unique { .. }) => ErrorCode::Unavailable,
            Self::Db(e) => db_code(e),
            Self::Idempotency(e) => e.code(),
            Self::Crashed(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<RecordingError> for tonic::Status {
    fn from(e: RecordingError) -> Self {
        if let RecordingError::MediaUnavailable(why) = &e {
            tracing::warn!(%why, "livekit unavailable");
            return huddle_common::public_unavailable(why);
        }
        huddle_serve::to_status(e)
    }
}
