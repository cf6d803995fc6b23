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
