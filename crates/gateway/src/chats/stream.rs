//! `GET /api/meetings/{id}/chats/stream`: Server-Sent Events over
//! chat-service's `Subscribe`. Each message is an event of the default type
//! whose `id:` is the message id; a comment every `heartbeat` keeps proxies
//! and clients from timing out and shows a dead connection; `Last-Event-ID`
//! resumes after that message with nothing lost or repeated (chat-service
//! reads what to send from Postgres). A browser's EventSource cannot set
//! headers, so this route alone also takes the token as `?access_token=`
//! (the request log records the path only, never the query).
//!
//! Limits: open streams per user and per gateway process (429 past them).
//! The stream ends when chat-service ends it (meeting deleted, subscriber
//! too slow, server stopping) and when this gateway shuts down, so clients
//! reconnect, with `Last-Event-ID`, to a replica that is serving.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web::{self, Bytes},
};
use futures::{Stream, future::BoxFuture};
use huddle_common::{ErrorCode, Shutdown};
use huddle_domain::id as ids;
use huddle_proto::chat::v1 as pb;
use serde::Deserialize;
use tonic::Streaming;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{ChatMessage, caller};
use crate::Backends;
use crate::auth::{AuthError, JwtVerifier, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::meetings::access;
use crate::request_id::RequestId;
use tokio::time::Instant;

/// The standard header a reconnecting EventSource sends.
const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Interval of the heartbeat comment (SPEC §3: at most 15 s).
    pub heartbeat: Duration,
    /// Open streams per gateway process.
    pub max_streams: usize,
    /// Open streams per user and gateway process.
    pub max_streams_per_user: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            max_streams: 10_000,
            max_streams_per_user: 8,
        }
    }
}

/// This gateway's open streams.
pub struct Streams {
    limits: StreamLimits,
    shutdown: Shutdown,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// One open stream, counted until dropped (when its body is).
struct Admission {
    streams: Arc<Streams>,
    user: Uuid,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = lock(&self.streams.open);
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Streams {
    pub fn new(limits: StreamLimits, shutdown: Shutdown) -> Self {
        Self {
            limits,
            shutdown,
            open: Mutex::default(),
        }
    }

    /// Open streams now.
    pub fn open(&self) -> usize {
        lock(&self.open).values().sum()
    }

    fn admit(self: &Arc<Self>, user: Uuid) -> Result<Admission, ApiError> {
        let mut open = lock(&self.open);
        let total: usize = open.values().sum();
        let mine = open.get(&user).copied().unwrap_or(0);
        if total >= self.limits.max_streams {
            return Err(too_many(
                "too many open streams on this server; retry shortly",
            ));
        }
        if mine >= self.limits.max_streams_per_user {
            return Err(too_many(&format!(
                "at most {} open chat streams per user",
                self.limits.max_streams_per_user
            )));
        }
        *open.entry(user).or_default() += 1;
        Ok(Admission {
            streams: self.clone(),
            user,
        })
    }
}

fn too_many(message: &str) -> ApiError {
    ApiError::new(ErrorCode::TooManyRequests, message)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The token, for clients that cannot send `Authorization` (a browser's
    /// EventSource). Never logged. The header wins when both are given.
    pub access_token: Option<String>,
}

/// The header's token, else the query's.
fn authenticate(
    req: &HttpRequest,
    verifier: &JwtVerifier,
    query: &StreamQuery,
) -> Result<Principal, ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(verifier.authenticate(req)?);
    }
    match query.access_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(verifier.verify(token)?),
        _ => Err(AuthError::Missing.into()),
    }
}

fn last_event_id(req: &HttpRequest) -> Result<Option<Uuid>, ApiError> {
    req.headers()
        .get(LAST_EVENT_ID)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|raw| ids::parse("Last-Event-ID", raw.trim()).ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "not a valid uuid"))
        })
        .transpose()
}

/// New messages as they are posted (host or participant), as Server-Sent
/// Events: each an event with `id:` = message id and the message JSON as
/// `data:`; a comment line at least every 15 s. Reconnect with
/// `Last-Event-ID` to get exactly the messages missed.
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/chats/stream",
    tag = "chat",
    params(
        ("id" = Uuid, Path, description = "Meeting id"),
        ("Last-Event-ID" = Option<Uuid>, Header, description = "Resume after this message (sent by EventSource on reconnect)"),
        StreamQuery,
    ),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "The event stream; each `data:` is a ChatMessage", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid id or Last-Event-ID", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant, or Last-Event-ID is no message of it (reconnect without it)", body = ErrorBody),
        (status = 429, description = "Too many open streams (per user or on this server)", body = ErrorBody),
    )
)]
#[allow(clippy::too_many_arguments)]
pub async fn stream_chats(
    req: HttpRequest,
    rid: RequestId,
    backends: web::Data<Backends>,
    streams: web::Data<Streams>,
    verifier: web::Data<JwtVerifier>,
    id: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let principal = authenticate(&req, &verifier, &query)?;
    let meeting = ids::parse("id", &id)?;
    let after = last_event_id(&req)?;
    let user = caller(&principal)?;
    let admission = streams.clone().into_inner().admit(user)?;
    access(&backends, &rid, meeting, user).await?;
    // No deadline: the call lasts as long as the stream.
    let mut request = tonic::Request::new(pb::SubscribeRequest {
        meeting_id: meeting.to_string(),
        after: after.map(|a| a.to_string()),
    });
    rid.attach(&mut request);
    let upstream = backends.chats().subscribe(request).await?.into_inner();
    let body = events(
        upstream,
        streams.limits.heartbeat,
        streams.shutdown.clone(),
        admission,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // nginx (and the ingress built on it) must pass events on at once.
        .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")))
        .streaming(body))
}

struct State {
    upstream: Streaming<pb::ChatMessage>,
    heartbeat: tokio::time::Interval,
    stopped: BoxFuture<'static, ()>,
    started: bool,
    _admission: Admission,
}

/// The SSE body: a first comment (the client knows it is subscribed),
/// then events (in order, each as it arrives: chat-service sends a message
/// only once its cache effects are applied, and the gateway's reads reuse
/// no answer from before, `coalesce`) and heartbeats until the upstream or
/// the gateway ends.
fn events(
    upstream: Streaming<pb::ChatMessage>,
    every: Duration,
    shutdown: Shutdown,
    admission: Admission,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        upstream,
        heartbeat,
        stopped: Box::pin(shutdown.wait()),
        started: false,
        _admission: admission,
    };
    futures::stream::unfold(state, |mut state| async move {
        if !state.started {
            state.started = true;
            return Some((
                Ok(Bytes::from_static(b"retry: 1000\n: subscribed\n\n")),
                state,
            ));
        }
        let chunk = next_chunk(&mut state).await?;
        Some((Ok(chunk), state))
    })
}

/// The next thing to write; `None` ends the body.
async fn next_chunk(state: &mut State) -> Option<Bytes> {
    tokio::select! {
        () = &mut state.stopped => None,
        next = state.upstream.message() => match next {
            Ok(Some(message)) => event(message),
            Ok(None) => None,
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "chat stream ended by chat-service");
                None
            }
        },
        _ = state.heartbeat.tick() => Some(Bytes::from_static(b": heartbeat\n\n")),
    }
}

/// One message as an SSE event; `None` (ending the stream) for a message
/// chat-service should never send.
fn event(message: pb::ChatMessage) -> Option<Bytes> {
    let message = ChatMessage::try_from(message).ok()?;
    let data = serde_json::to_string(&message).ok()?;
    // A uuid and compact JSON: neither can hold a line break.
    Some(Bytes::from(format!("id: {}\ndata: {data}\n\n", message.id)))
}
