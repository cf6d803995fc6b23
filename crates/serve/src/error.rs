//! One way for a service error to become a `tonic::Status`.

use huddle_common::ErrorCode;
use huddle_db::DbError;

/// A service's error type: each variant names its place in the one code
/// table; [`to_status`] does the rest, the same way for every service.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> ErrorCode;
}

/// Storage errors mean the same in every service.
pub fn db_code(e: &DbError) -> ErrorCode {
    match e {
        DbError::NotFound => ErrorCode::NotFound,
        DbError::Unique { .. } => ErrorCode::Conflict,
        DbError::Unavailable(_) => ErrorCode::Unavailable,
        DbError::Query(_) => ErrorCode::Internal,
    }
}

/// How `DbError::Unavailable` displays.
const DB_UNAVAILABLE_TEXT: &str = "database unavailable:";

/// The status a caller sees. Server-side failures (internal, unavailable)
/// are logged in full and answered with their category only, so neither
/// SQL nor peer addresses leak to clients.
pub fn to_status<E: ServiceError>(e: E) -> tonic::Status {
    let code = e.code();
    if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
        tracing::error!(error = %e, "request failed");
        // Every service error wraps `DbError` transparently, so its text is
        // the storage layer's (the unit test below pins the prefix).
        if code == ErrorCode::Unavailable && e.to_string().starts_with(DB_UNAVAILABLE_TEXT) {
            return code.status(huddle_common::error::DATABASE_UNAVAILABLE);
        }
        return code.status(code.as_str().to_lowercase().replace('_', " "));
    }
    code.status(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Demo {
        #[error("name: must not be empty")]
        Bad,
        #[error(transparent)]
        Db(DbError),
    }

    impl ServiceError for Demo {
        fn code(&self) -> ErrorCode {
            match self {
                Self::Bad => ErrorCode::InvalidArgument,
                Self::Db(e) => db_code(e),
            }
        }
    }

    #[test]
    fn client_errors_keep_their_message_and_server_errors_hide_it() {
        let bad = to_status(Demo::Bad);
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert_eq!(bad.message(), "name: must not be empty");

        let down = to_status(Demo::Db(DbError::Unavailable(
            "connect 10.0.0.7:5432 refused".into(),
        )));
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert!(!down.message().contains("10.0.0.7"), "{}", down.message());
        assert_eq!(down.message(), huddle_common::error::DATABASE_UNAVAILABLE);

        let conflict = to_status(Demo::Db(DbError::Unique {
            constraint: "users_email_key".into(),
        }));
        assert_eq!(conflict.code(), tonic::Code::AlreadyExists);
    }
}
