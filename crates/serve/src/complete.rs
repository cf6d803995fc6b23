//! Writes run to their end whatever happens to the request.
//!
//! tonic drops a handler's future when the client goes away or its deadline
//! passes. Dropped while its COMMIT is in flight, a write may have committed
//! with nobody left to apply its invalidation (nor to answer a retry's
//! idempotency claim quickly): its outbox row would wait for a relay's idle
//! tick, and reads would serve what it deleted until then. Every write
//! handler therefore runs its whole write — transaction and
//! `Outbox::after_commit` — in a task of its own and awaits it.

use std::future::Future;

use huddle_common::ErrorCode;

/// Runs `write` in its own task and waits for it; dropping the returned
/// future does not stop the write. A panic in it is the caller's panic; a
/// runtime shutting down under it answers UNAVAILABLE (the outbox relay of
/// the next start applies whatever committed).
pub async fn to_completion<T, F>(write: F) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    match tokio::spawn(write).await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ErrorCode::Unavailable.status("unavailable")),
    }
}
