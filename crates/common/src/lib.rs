//! What every Huddle process shares and that holds no database or cache code:
//! the error-code table, logging setup, graceful shutdown, and load-balanced
//! gRPC client channels.

pub mod error;
pub mod grpc_client;
pub mod grpc_metrics;
pub mod shutdown;
pub mod telemetry;

pub use error::ErrorCode;
pub use shutdown::Shutdown;

/// gRPC metadata key (and HTTP header) carrying the request id end to end.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// gRPC metadata carrying a creating request's `Idempotency-Key` header to
/// the service that writes (which keeps it: `huddle_serve::idempotency`).
pub const IDEMPOTENCY_KEY_METADATA: &str = "idempotency-key";
/// Whose key it is, for calls whose message names no caller (an admin's
/// `CreateUser`: the token's subject).
pub const IDEMPOTENCY_CALLER_METADATA: &str = "idempotency-caller";

/// gRPC metadata that marks a 5xx status's message as written for the
/// client (no internals in it), so it crosses every hop to the HTTP answer
/// instead of being replaced by a generic one: "LiveKit is unavailable" is
/// more use to a caller than "a backend service is unavailable".
pub const PUBLIC_MESSAGE_METADATA: &str = "huddle-public-message";

/// An UNAVAILABLE status whose message the client may read.
pub fn public_unavailable(message: &str) -> tonic::Status {
    let mut status = tonic::Status::unavailable(message);
    status.metadata_mut().insert(
        PUBLIC_MESSAGE_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// Whether `status` carries [`PUBLIC_MESSAGE_METADATA`].
pub fn is_public(status: &tonic::Status) -> bool {
    status.metadata().contains_key(PUBLIC_MESSAGE_METADATA)
}
