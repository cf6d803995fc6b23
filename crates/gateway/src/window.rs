//! The read window: a hot read's answer is reused for a few milliseconds
//! in the gateway, and every write's answer waits a little longer. Together
//! they keep SPEC's promise — no read returns data older than an
//! acknowledged write — without a second set of invalidation rules.
//!
//! The rule, for a fleet whose longest `window` is W and every replica's
//! `fence` F ≥ W:
//! - an answer built from backend calls that started at `s` may be given to
//!   any request that *arrives* before `s + window` (while the calls still
//!   run, or after they answered);
//! - a write (any request whose method is not safe) is answered no sooner
//!   than F after its backend acknowledged it ([`fence`]); a chat stream
//!   event leaves no sooner than F after chat-service sent it (it sends a
//!   message only once its cache effects are applied).
//!
//! Why that is enough: a client learns of a write at `A`, its answer (or
//! the stream event); the backend had applied it at `a <= A - F`. A request
//! arriving at `r > A` is given an answer whose calls started at
//! `s > r - W >= r - F > a`, after the backend applied the write, so the
//! backend's own guarantee covers it. Only elapsed time is compared, on
//! each process's monotonic clock: replicas need no synchronised clocks,
//! only clocks that tick at the same rate.
//!
//! What it costs: F on every write's latency and on every stream event.
//! What it buys: a hot key is read from the backend about once per window
//! per gateway instead of once per request (ARCHITECTURE.md, "Where a
//! cached read's time goes"). A zero window turns reuse off; the fence
//! stays whatever it is set to. Raising W across a fleet: raise every
//! replica's fence first, then the windows (deploy/README.md).

use std::{
    collections::HashMap,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use actix_web::{
    HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::ContentType,
    middleware::Next,
    web::{self, Bytes},
};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{Success, error::ApiError};

/// The window every gateway uses unless told otherwise: a hot key is read
/// from the backend about 500 times a second per gateway, and a write
/// waits 2 ms more.
pub const DEFAULT_READ_WINDOW_MS: u64 = 2;

/// The fence unless told otherwise: the default window's, so a fleet on
/// defaults is sound.
pub const DEFAULT_READ_FENCE_MS: u64 = DEFAULT_READ_WINDOW_MS;

/// The rule between the two settings of one gateway: its fence must cover
/// its own window (and, across a fleet, every replica's window — which is
/// why a rollout raises every fence first; deploy/README.md).
pub fn check_fence(window: Duration, fence: Duration) -> Result<(), String> {
    if fence < window {
        return Err(format!(
            "HUDDLE_READ_FENCE_MS ({} ms) must be at least HUDDLE_READ_WINDOW_MS ({} ms): a \
             write answered sooner than a window's length could be followed by a read \
             older than it",
            fence.as_millis(),
            window.as_millis()
        ));
    }
    Ok(())
}

/// Answers kept at most; past it, expired ones are dropped, and if none
/// has expired the new answer is not kept (it is still served).
const MAX_ENTRIES: usize = 8192;

/// What an answer depends on: everything the backend calls were asked and
/// everything the gateway rendered differently per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKey {
    /// `GET /api/users/{id}`, with or without the email.
    User { id: Uuid, email: bool },
    /// `GET /api/meetings/{id}` as `caller` sees it (access and the invite
    /// code depend on who asks).
    Meeting { caller: Uuid, id: Uuid },
    /// `GET /api/meetings/live`: the same for every caller.
    Live,
}

impl WindowKey {
    fn route(self) -> &'static str {
        match self {
            Self::User { .. } => "/api/users/{id}",
            Self::Meeting { .. } => "/api/meetings/{id}",
            Self::Live => "/api/meetings/live",
        }
    }
}

struct Slot {
    /// When the calls behind it started: it serves requests arriving
    /// before `started + window`.
    started: Instant,
    /// Tells a slot apart from a later one under the same key, so a slow
    /// leader never overwrites or removes its successor.
    generation: u64,
    state: State,
}

enum State {
    /// The leader's calls are running; `None` when they failed or were
    /// cancelled (waiters then ask for themselves).
    Pending(broadcast::Sender<Option<Bytes>>),
    Ready(Bytes),
}

enum Role {
    Hit(Bytes),
    Wait(broadcast::Receiver<Option<Bytes>>),
    Lead(u64, broadcast::Sender<Option<Bytes>>),
}

#[derive(Default)]
struct Slots {
    map: HashMap<WindowKey, Slot>,
    generation: u64,
}

pub struct ReadWindow {
    window: Duration,
    /// How long a write's answer, and each chat stream event, is held:
    /// at least the longest window of any replica.
    fence: Duration,
    slots: Mutex<Slots>,
    lookups: IntCounterVec,
}

impl ReadWindow {
    /// A window of `window` and a fence of `fence` (≥ `window`: callers
    /// check it with [`check_fence`] at start; here the fence is raised to
    /// the window rather than trusted).
    pub fn new(
        window: Duration,
        fence: Duration,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "huddle_gateway_window_lookups_total",
                "Reads answered from the gateway's read window (hit, joined) or by the backend (miss)",
            ),
            &["route", "result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Self {
            window,
            fence: fence.max(window),
            slots: Mutex::default(),
            lookups,
        })
    }

    /// The answer for `key`: one whose calls started less than the window
    /// before this request arrived, or `fetch`'s (200, the success envelope
    /// around its data). Errors are never kept: they pass through as they are.
    pub async fn serve<T, F, Fut>(&self, key: WindowKey, fetch: F) -> Result<HttpResponse, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        if self.window.is_zero() {
            return Ok(ok(render(fetch().await?)?));
        }
        let (generation, tx) = match self.join(key) {
            Role::Hit(body) => {
                self.count(key, "hit");
                return Ok(ok(body));
            }
            Role::Wait(mut rx) => {
                if let Ok(Some(body)) = rx.recv().await {
                    self.count(key, "joined");
                    return Ok(ok(body));
                }
                // The leader failed or went away: ask for ourselves.
                self.count(key, "miss");
                return Ok(ok(render(fetch().await?)?));
            }
            Role::Lead(generation, tx) => (generation, tx),
        };
        self.count(key, "miss");
        let guard = Leader {
            window: self,
            key,
            generation,
            tx,
            landed: false,
        };
        let body = render(fetch().await?)?;
        guard.land(body.clone());
        Ok(ok(body))
    }

    fn join(&self, key: WindowKey) -> Role {
        let now = Instant::now();
        let mut slots = self.lock();
        if let Some(slot) = slots.map.get(&key)
            && now.duration_since(slot.started) < self.window
        {
            return match &slot.state {
                State::Ready(body) => Role::Hit(body.clone()),
                State::Pending(tx) => Role::Wait(tx.subscribe()),
            };
        }
        if slots.map.len() >= MAX_ENTRIES {
            let window = self.window;
            slots
                .map
                .retain(|_, slot| now.duration_since(slot.started) < window);
        }
        slots.generation += 1;
        let generation = slots.generation;
        let tx = broadcast::channel(1).0;
        if slots.map.len() < MAX_ENTRIES || slots.map.contains_key(&key) {
            // Replacing an older pending slot leaves its waiters with their
            // leader, which keeps its own sender.
            slots.map.insert(
                key,
                Slot {
                    // Before the leader's calls start, so the slot never
                    // claims to be fresher than they are.
                    started: now,
                    generation,
                    state: State::Pending(tx.clone()),
                },
            );
        }
        Role::Lead(generation, tx)
    }

    /// How long writes' answers and stream events are held back.
    pub fn fence(&self) -> Duration {
        self.fence
    }

    fn count(&self, key: WindowKey, result: &str) {
        self.lookups.with_label_values(&[key.route(), result]).inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every change is a single insert or remove: a panic cannot leave
        // the map half-changed.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The leader's claim on a slot: on success it becomes the answer; on an
/// error, a panic or cancellation (drop) the slot goes and waiters are
/// released to ask for themselves.
struct Leader<'a> {
    window: &'a ReadWindow,
    key: WindowKey,
    generation: u64,
    /// Its waiters' channel, also after a newer slot replaced its own.
    tx: broadcast::Sender<Option<Bytes>>,
    landed: bool,
}

impl Leader<'_> {
    fn land(mut self, body: Bytes) {
        let mut slots = self.window.lock();
        if let Some(slot) = slots.map.get_mut(&self.key)
            && slot.generation == self.generation
        {
            slot.state = State::Ready(body.clone());
        }
        drop(slots);
        // No receivers is fine: nobody was waiting.
        let _ = self.tx.send(Some(body));
        self.landed = true;
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let mut slots = self.window.lock();
        if slots
            .map
            .get(&self.key)
            .is_some_and(|slot| slot.generation == self.generation)
        {
            // Dropping the sender wakes the waiters with an error.
            slots.map.remove(&self.key);
        }
    }
}

fn render<T: Serialize>(data: T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(&Success {
        success: true,
        data,
    })
    .map(Bytes::from)
    .map_err(|e| {
        tracing::error!(error = %e, "answer cannot be serialized");
        ApiError::internal()
    })
}

fn ok(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(body)
}

/// Middleware (for `middleware::from_fn`): a request whose method is not
/// safe is answered no sooner than the fence after its handler finished —
/// after its backend acknowledged it — so no replica's window (each at most
/// the fence) can still hold an answer read before it (module doc).
pub async fn fence<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let safe = req.method().is_safe();
    let fence = req
        .app_data::<web::Data<ReadWindow>>()
        .map_or(Duration::ZERO, |w| w.fence);
    let res = next.call(req).await;
    if !safe && !fence.is_zero() {
        // tokio's timer never wakes early, so this waits at least `fence`.
        tokio::time::sleep(fence).await;
    }
    res
}

#[cfg(test)]
mod tests;
