//! The one place where the gateway turns failures into HTTP: every error path,
//! from a gRPC status to a malformed body or an unknown route, answers with the
//! same JSON envelope and a status taken from the shared `ErrorCode` table.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError},
    http::{StatusCode, header},
    middleware::Next,
    web,
};
use huddle_common::ErrorCode;

use crate::allow::{AllowedMethods, method_label};
use serde::Serialize;
use utoipa::ToSchema;

/// An error as the API reports it: a code from the shared table and a
/// message that is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The error envelope, as serialized on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// One of the codes of the error table, e.g. `INVALID_ARGUMENT`.
    #[schema(example = "NOT_FOUND")]
    pub code: String,
    #[schema(example = "user not found")]
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A 400 naming the offending field, e.g. `name: must be 1 to 100 characters`.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}"))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.status());
        if self.code == ErrorCode::Unauthenticated {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            success: false,
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
        })
    }
}

impl From<tonic::Status> for ApiError {
    /// A service's 4xx message is meant for the caller and passes through; a
    /// 5xx message may carry internals (SQL, hostnames), so it is logged here
    /// and replaced by a generic one — except the service's fixed word that
    /// its database is unavailable, which names nothing internal.
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            // Made on this side from a transport failure (the peer reset the
            // connection, or vanished mid-handshake): the backend is
            // unreachable, which the API calls 503, not 500.
            tonic::Code::Unknown if std::error::Error::source(&status).is_some() => {
                ErrorCode::Unavailable
            }
            other => ErrorCode::from_grpc(other),
        };
        if code.http_status() < 500
            || (code == ErrorCode::Unavailable
                && status.message() == huddle_common::error::DATABASE_UNAVAILABLE)
        {
            let message = if status.message().is_empty() {
                default_message(code).to_owned()
            } else {
                status.message().to_owned()
            };
            return Self::new(code, message);
        }
        tracing::warn!(
            grpc_code = ?status.code(),
            grpc_message = status.message(),
            "backend call failed"
        );
        if huddle_common::is_public(&status) && !status.message().is_empty() {
            return Self::new(code, status.message());
        }
        Self::new(code, default_message(code))
    }
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument => "invalid argument",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::PermissionDenied => "permission denied",
        ErrorCode::NotFound => "not found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::PayloadTooLarge => "payload too large",
        ErrorCode::TooManyRequests => "too many requests",
        ErrorCode::MethodNotAllowed => "method not allowed",
        ErrorCode::NoRecording => "no recording yet",
        ErrorCode::IdempotencyKeyReused => "idempotency key already used with another request",
        ErrorCode::Unavailable => "a backend service is unavailable, try again later",
        ErrorCode::Internal => "internal error",
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => too_large(limit),
            JsonPayloadError::Payload(PayloadError::Overflow) => too_large(crate::MAX_BODY_BYTES),
            JsonPayloadError::ContentType => {
                ApiError::bad_request("body: content type must be application/json")
            }
            // serde's text names the field ("unknown field `foo`, expected ...").
            JsonPayloadError::Deserialize(e) => ApiError::bad_request(format!("body: {e}")),
            other => ApiError::bad_request(format!("body: {other}")),
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("body: must be at most {limit} bytes"),
    )
}

/// `JsonConfig` error handler: malformed bodies answer with the envelope.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::from(err).into()
}

/// `QueryConfig` error handler.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let QueryPayloadError::Deserialize(e) = err else {
        return ApiError::bad_request("query: malformed query string").into();
    };
    ApiError::bad_request(format!("query: {e}")).into()
}

/// `PathConfig` error handler: a bad path parameter is bad input (400), not
/// actix's default 404.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = err else {
        return ApiError::bad_request("path: malformed path parameter").into();
    };
    ApiError::bad_request(format!("path: {e}")).into()
}

/// Fallback for requests that match no route.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Middleware that puts any error response not already in the envelope (a
/// wrong method on a known route, a missing Swagger asset, anything actix
/// answers by itself) into it, so clients only ever parse one error shape.
pub async fn ensure_envelope<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Handlers and extractors turn their errors into responses before this
    // point, so an `Err` here could only come from a middleware further in.
    // (Cloning the request up front to rebuild one would break routing.)
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return Ok(res);
    }
    let error = envelope_for_status(status);
    let mut response = error.error_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let pattern = crate::route::pattern_of(res.request());
        let allowed = res.request().app_data::<web::Data<AllowedMethods>>();
        if let (Some(pattern), Some(allowed)) = (pattern, allowed) {
            let message = format!(
                "{} is not allowed on {pattern}; allowed: {}",
                method_label(res.request().method()),
                allowed.allow(&pattern)
            );
            response = ApiError::new(ErrorCode::MethodNotAllowed, message).error_response();
            if let Ok(value) = header::HeaderValue::from_str(allowed.allow(&pattern)) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
    }
    Ok(res.into_response(response))
}

fn is_json<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The error-table entry for a bare HTTP status. The status is then taken from
/// the table, so code and status always agree.
pub fn envelope_for_status(status: StatusCode) -> ApiError {
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 | 410 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::TooManyRequests,
        502..=504 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    };
    let message = match status.as_u16() {
        405 => "method not allowed on this route",
        404 => "not found",
        _ => default_message(code),
    };
    ApiError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_grpc_code_maps_to_the_expected_http_status() {
        let expected = [
            (Code::Ok, 500),
            (Code::Cancelled, 503),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 503),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 409),
            (Code::Aborted, 409),
            (Code::OutOfRange, 413),
            (Code::Unimplemented, 500),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in expected {
            let err = ApiError::from(tonic::Status::new(code, "detail"));
            assert_eq!(err.status().as_u16(), http, "{code:?}");
            assert_eq!(err.code.http_status(), http, "{code:?}");
        }
    }

    #[test]
    fn client_errors_pass_the_service_message_through() {
        let err = ApiError::from(tonic::Status::not_found("user not found"));
        assert_eq!(err.message, "user not found");
        let err = ApiError::from(tonic::Status::already_exists("email already taken"));
        assert_eq!(err.code, ErrorCode::Conflict);
        assert_eq!(err.message, "email already taken");
    }

    #[test]
    fn server_errors_hide_the_service_message() {
        let err = ApiError::from(tonic::Status::internal("relation users does not exist"));
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(!err.message.contains("relation"));
        let err = ApiError::from(tonic::Status::unavailable(
            "tcp connect error 10.0.0.7:50051",
        ));
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(!err.message.contains("10.0.0.7"));
    }

    #[test]
    fn bare_statuses_map_to_a_consistent_code_and_status() {
        for raw in [
            400u16, 401, 403, 404, 405, 409, 413, 415, 429, 500, 502, 503,
        ] {
            let status = StatusCode::from_u16(raw).unwrap();
            let err = envelope_for_status(status);
            assert_eq!(err.status().as_u16(), err.code.http_status());
        }
        assert_eq!(
            envelope_for_status(StatusCode::METHOD_NOT_ALLOWED).code,
            ErrorCode::MethodNotAllowed
        );
        assert_eq!(
            envelope_for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE).code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn json_overflow_is_413_and_bad_json_is_400() {
        let err = ApiError::from(JsonPayloadError::Overflow { limit: 65536 });
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let err = ApiError::from(JsonPayloadError::ContentType);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
