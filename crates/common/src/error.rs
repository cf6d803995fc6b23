//! The one error-code table: every error a service or the gateway reports maps
//! to exactly one code, and each code to one gRPC code and one HTTP status.

use serde::Serialize;

/// The message of an `Unavailable` answer caused by the service's own
/// database (down, failing over): the one 5xx message a service sends
/// that the gateway passes on, as it names no internals and tells the
/// caller what still works.
pub const DATABASE_UNAVAILABLE: &str = "the database is unavailable: writes and uncached reads fail until it is back (cached reads are \
     still served), try again shortly";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    /// HTTP only: a known route called with a method it does not serve. No
    /// service returns it; the gateway answers it with an `Allow` header.
    MethodNotAllowed,
    /// HTTP only: a meeting the caller may read has no recording yet (the
    /// gateway's word for recording-service's NOT_FOUND there), told apart
    /// from a meeting that is not there.
    NoRecording,
    /// An `Idempotency-Key` this caller already used with another request
    /// body (or another operation): the first answer is not this request's.
    IdempotencyKeyReused,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::InvalidArgument,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::NotFound,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::TooManyRequests,
        Self::MethodNotAllowed,
        Self::NoRecording,
        Self::IdempotencyKeyReused,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::NoRecording => "NO_RECORDING",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::Conflict => tonic::Code::AlreadyExists,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::TooManyRequests => tonic::Code::ResourceExhausted,
            Self::MethodNotAllowed => tonic::Code::Unimplemented,
            Self::NoRecording => tonic::Code::NotFound,
            Self::IdempotencyKeyReused => tonic::Code::FailedPrecondition,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::TooManyRequests => 429,
            Self::MethodNotAllowed => 405,
            Self::NoRecording => 404,
            Self::IdempotencyKeyReused => 409,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The inverse of [`ErrorCode::grpc_code`], used by the gateway on every
    /// status a service returns. Codes no service sends on purpose collapse
    /// into the nearest meaning; a deadline or a refused connection is a
    /// dependency being down (503), not a bug (500). `Unimplemented` from a
    /// service is a gateway/service version skew, a bug (500), never the
    /// caller's wrong HTTP method: `MethodNotAllowed` is not reached from gRPC.
    pub fn from_grpc(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument => Self::InvalidArgument,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            // Sent by a service only for a reused idempotency key.
            Code::FailedPrecondition => Self::IdempotencyKeyReused,
            Code::AlreadyExists | Code::Aborted => Self::Conflict,
            Code::OutOfRange => Self::PayloadTooLarge,
            Code::ResourceExhausted => Self::TooManyRequests,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::Unavailable,
            Code::Ok | Code::Unknown | Code::Internal | Code::Unimplemented | Code::DataLoss => {
                Self::Internal
            }
        }
    }

    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_mapping_round_trips_for_every_code() {
        for code in ErrorCode::ALL {
            if code == ErrorCode::MethodNotAllowed {
                assert_eq!(ErrorCode::from_grpc(code.grpc_code()), ErrorCode::Internal);
                continue;
            }
            if code == ErrorCode::NoRecording {
                assert_eq!(ErrorCode::from_grpc(code.grpc_code()), ErrorCode::NotFound);
                continue;
            }
            assert_eq!(ErrorCode::from_grpc(code.grpc_code()), code, "{code:?}");
        }
    }

    #[test]
    fn only_internal_is_a_server_error() {
        for code in ErrorCode::ALL {
            let is_5xx_bug = code.http_status() == 500;
            assert_eq!(is_5xx_bug, code == ErrorCode::Internal, "{code:?}");
        }
    }
}
