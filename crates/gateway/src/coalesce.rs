//! Read coalescing: concurrent requests for the same hot answer share one
//! backend call, and only a call that started after each of them arrived.
//!
//! SPEC §6: once a write is acknowledged *or its effect has been seen*
//! through any channel, no read anywhere returns older data. The backend
//! guarantees that for every call that starts after the write applied. A
//! client that saw the write did so before its next request arrives, so
//! an answer from a call that started after that request arrived is
//! covered; an answer from a call already in flight when it arrived is not
//! (that call may have started before the write, on this gateway, while
//! the client saw the write through another one). So:
//! - no call in flight for the key: the request starts one;
//! - a call in flight: the request waits for the *next* call, which starts
//!   as soon as the in-flight one ends and is shared by every request that
//!   queued meanwhile.
//!
//! Nothing is kept once answered, so there is no time window, no setting
//! and nothing writes have to wait for. A hot key is asked of the backend
//! about once per backend round trip per gateway under load, however many
//! callers. Errors are never shared: when a call fails, or its leader is
//! cancelled, the requests that joined it ask for themselves.

use std::{collections::HashMap, future::Future, sync::Mutex};

use actix_web::{HttpResponse, http::header::ContentType, web::Bytes};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{Success, error::ApiError};

/// Keys with a call in flight (or queued), at most; past it, a request for
/// another key is served on its own.
const MAX_ENTRIES: usize = 8192;

/// What an answer depends on: everything the backend calls were asked and
/// everything the gateway rendered differently per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadKey {
    /// `GET /api/users/{id}`, with or without the email.
    User { id: Uuid, email: bool },
    /// `GET /api/meetings/{id}` as `caller` sees it (access and the invite
    /// code depend on who asks).
    Meeting { caller: Uuid, id: Uuid },
    /// `GET /api/meetings/live`: the same for every caller.
    Live,
}

impl ReadKey {
    fn route(self) -> &'static str {
        match self {
            Self::User { .. } => "/api/users/{id}",
            Self::Meeting { .. } => "/api/meetings/{id}",
            Self::Live => "/api/meetings/live",
        }
    }
}

/// What a call's batch hears on its channel.
#[derive(Clone)]
enum Msg {
    /// The call before ended: the first of the batch to claim it leads.
    Start(u64),
    /// The batch's call answered.
    Done(Bytes),
}

/// A key's calls: the current one (running, or waiting for a queued
/// request to claim it) and the batch queued behind it.
struct Entry {
    /// Tells a call apart from the next under the same key, so a finished
    /// leader never hands over its successor's batch.
    generation: u64,
    /// The current call's batch: everyone who joined it before it started.
    current: broadcast::Sender<Msg>,
    /// Whether a leader runs the current call; until then a request that
    /// arrives may claim it (it has not started, so it vouches for them).
    started: bool,
    /// The requests that arrived while the current call ran: they share
    /// the next call.
    next: Option<broadcast::Sender<Msg>>,
}

enum Role {
    Lead(u64, broadcast::Sender<Msg>),
    Wait(broadcast::Receiver<Msg>),
    /// No room to coalesce: ask for itself.
    Alone,
}

#[derive(Default)]
struct Entries {
    map: HashMap<ReadKey, Entry>,
    generation: u64,
}

pub struct Coalescer {
    enabled: bool,
    entries: Mutex<Entries>,
    lookups: IntCounterVec,
}

impl Coalescer {
    /// `enabled: false` (`HUDDLE_CACHE_READS=false`) sends every request to
    /// the backend on its own.
    pub fn new(enabled: bool, registry: &Registry) -> Result<Self, prometheus::Error> {
        // The name predates coalescing (it was the read window's); kept so
        // `make bench`'s figures stay comparable across releases.
        let lookups = IntCounterVec::new(
            Opts::new(
                "huddle_gateway_window_lookups_total",
                "Hot reads that shared a backend call started by another request (joined) or \
                 started their own (miss)",
            ),
            &["route", "result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Self {
            enabled,
            entries: Mutex::default(),
            lookups,
        })
    }

    /// The answer for `key` from a backend call that started after this
    /// request arrived: `fetch`'s (200, the success envelope around its
    /// data), or that of a call shared with requests that arrived with it.
    /// Errors pass through as they are, to this request only.
    pub async fn serve<T, F, Fut>(&self, key: ReadKey, fetch: F) -> Result<HttpResponse, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        if !self.enabled {
            // Not counted: nothing was looked up.
            return Ok(ok(render(fetch().await?)?));
        }
        let mut role = self.arrive(key);
        loop {
            match role {
                Role::Alone => {
                    self.count(key, "miss");
                    return Ok(ok(render(fetch().await?)?));
                }
                Role::Lead(generation, tx) => {
                    self.count(key, "miss");
                    let leader = Leader {
                        coalescer: self,
                        key,
                        generation,
                        tx: Some(tx),
                    };
                    let body = render(fetch().await?)?;
                    leader.land(body.clone());
                    return Ok(ok(body));
                }
                Role::Wait(mut rx) => match rx.recv().await {
                    Ok(Msg::Done(body)) => {
                        self.count(key, "joined");
                        return Ok(ok(body));
                    }
                    Ok(Msg::Start(generation)) => {
                        role = self.claim(key, generation).unwrap_or(Role::Wait(rx));
                    }
                    // The leader failed or went away: ask for ourselves.
                    Err(_) => role = Role::Alone,
                },
            }
        }
    }

    fn arrive(&self, key: ReadKey) -> Role {
        let mut entries = self.lock();
        let Entries { map, generation } = &mut *entries;
        if let Some(entry) = map.get_mut(&key) {
            if !entry.started {
                // Its queued requests all went away before claiming it.
                entry.started = true;
                return Role::Lead(entry.generation, entry.current.clone());
            }
            let next = entry.next.get_or_insert_with(|| broadcast::channel(2).0);
            return Role::Wait(next.subscribe());
        }
        if map.len() >= MAX_ENTRIES {
            // Batches whose requests all went away, never claimed.
            map.retain(|_, e| e.started || e.current.receiver_count() > 0);
            if map.len() >= MAX_ENTRIES {
                return Role::Alone;
            }
        }
        *generation += 1;
        let tx = broadcast::channel(2).0;
        map.insert(
            key,
            Entry {
                generation: *generation,
                current: tx.clone(),
                started: true,
                next: None,
            },
        );
        Role::Lead(*generation, tx)
    }

    /// A queued request told its batch may start: the first to ask leads
    /// it, the others go on waiting for its answer.
    fn claim(&self, key: ReadKey, generation: u64) -> Option<Role> {
        let mut entries = self.lock();
        let entry = entries.map.get_mut(&key)?;
        if entry.generation != generation || entry.started {
            return None;
        }
        entry.started = true;
        Some(Role::Lead(generation, entry.current.clone()))
    }

    /// The call `generation` of `key` ended: its queued batch, if any,
    /// becomes the current call, to be claimed by one of its requests.
    fn hand_over(&self, key: ReadKey, generation: u64) {
        let mut entries = self.lock();
        let Entries {
            map,
            generation: last,
        } = &mut *entries;
        let Some(entry) = map.get_mut(&key) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        match entry.next.take() {
            Some(next) => {
                *last += 1;
                entry.generation = *last;
                entry.current = next;
                entry.started = false;
                // No receivers is fine: the next arrival claims it.
                let _ = entry.current.send(Msg::Start(*last));
            }
            None => {
                map.remove(&key);
            }
        }
    }

    fn count(&self, key: ReadKey, result: &str) {
        self.lookups.with_label_values(&[key.route(), result]).inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every change is made whole under the lock: a panic cannot leave
        // an entry half-changed.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The leader's claim on a call: on success its answer goes to its batch;
/// on an error, a panic or cancellation (drop) its batch is released to ask
/// for themselves. Either way the queued batch starts next.
struct Leader<'a> {
    coalescer: &'a Coalescer,
    key: ReadKey,
    generation: u64,
    /// Its batch's channel; `None` once answered.
    tx: Option<broadcast::Sender<Msg>>,
}

impl Leader<'_> {
    fn land(mut self, body: Bytes) {
        self.coalescer.hand_over(self.key, self.generation);
        if let Some(tx) = self.tx.take() {
            // No receivers is fine: nobody joined.
            let _ = tx.send(Msg::Done(body));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Handing over drops the entry's sender; dropping ours closes the
            // channel, which wakes the batch with an error.
            self.coalescer.hand_over(self.key, self.generation);
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

#[cfg(test)]
mod tests;
