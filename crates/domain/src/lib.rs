//! The domain rules both sides of a gRPC call need, written once: the
//! gateway checks them to answer a 400 that names the field before any
//! backend call, and every service checks them again because it must be safe
//! whoever calls it. A copied rule drifts; a called one cannot.
//!
//! Every check returns a [`RuleError`] naming the field (as the HTTP API
//! spells it, e.g. `scheduledAt`); each side maps it onto its own error
//! (gateway: 400 `INVALID_ARGUMENT`, services: `InvalidArgument`).
//!
//! No diesel, no tonic, nothing async: the gateway must stay free of
//! database crates (`make check-gateway-deps`).

pub mod chat;
mod error;
pub mod id;
pub mod idempotency;
pub mod invite_code;
pub mod meeting;
pub mod text;
pub mod time;
pub mod user;

pub use error::RuleError;
