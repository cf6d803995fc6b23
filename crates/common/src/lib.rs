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
