//! The live stream (`Subscribe`): every message of a meeting after a given
//! one, in order, each once, from whichever replica took the post.
//!
//! What to send is always read from Postgres, never from a notification:
//! once a post's cache effects are applied (or held for), its poster sends
//! `NOTIFY huddle_chat, '<meeting>'`, which only wakes the meeting's
//! [`Hub`] on every replica; the hub reads the messages after the last one
//! it sent and broadcasts them. A lost notification (a listener
//! reconnecting, a replica starting) costs at most one `poll` interval,
//! since each hub also reads on that tick. Redis is not involved.
//!
//! **Never ahead of the cache.** A message is sent only once its window
//! append and count delete are applied (its outbox row is gone) or its
//! poster held reads for them on every replica (`held`; this replica then
//! holds too, before sending). Reading stops at the first message that is
//! neither, whatever woke the hub: a later post cannot carry an earlier,
//! unapplied one out. Streams start before the oldest such message, so
//! it is sent once it may be, in order.
//!
//! One hub per meeting and process reads for all of that process's
//! subscribers, so a message costs one query per replica, not one per
//! subscriber. Each subscriber has a bounded buffer (the broadcast's
//! capacity plus its outgoing channel): one that falls behind is cut off
//! with `RESOURCE_EXHAUSTED` and resumes from its last message, and never
//! slows the others.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use huddle_common::Shutdown;
use huddle_db::Database;
use huddle_proto::chat::v1 as pb;
use huddle_serve::{
    Outbox,
    listener::{self, HEARTBEAT, Heard},
    users::{RequestCtx, Users},
};
use tokio::sync::{Notify, broadcast, mpsc};
use tonic::Status;
use uuid::Uuid;

use crate::{
    db::{self, Cursor, Delivery, MessageRow},
    error::ChatError,
    grpc::{cursor_of, messages_pb},
};

/// Messages read per query.
const PAGE: u32 = 200;

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How often a hub reads without being woken (bounds the delay a lost
    /// notification can cause).
    pub poll: Duration,
    /// Messages a subscriber may be behind before it is cut off.
    pub buffer: usize,
    /// Open streams per process; past it, `RESOURCE_EXHAUSTED`.
    pub max_subscribers: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(5),
            buffer: 256,
            max_subscribers: 10_000,
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    Message(Cursor, Arc<pb::ChatMessage>),
    /// The meeting was deleted.
    Ended,
}

struct Hub {
    tx: broadcast::Sender<Event>,
    wake: Notify,
}

/// Every hub of this process.
#[derive(Clone)]
pub struct Hubs {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// This replica's chat outbox: held before a held-for message is sent.
    outbox: Outbox,
    users: Users,
    config: StreamConfig,
    shutdown: Shutdown,
    hubs: Mutex<HashMap<Uuid, Arc<Hub>>>,
    open: AtomicUsize,
}

/// Counts an open stream while it lives.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub type MessageStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ChatMessage, Status>>;

impl Hubs {
    pub fn new(
        db: Database,
        outbox: Outbox,
        users: Users,
        config: StreamConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                outbox,
                users,
                config,
                shutdown,
                hubs: Mutex::default(),
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// Open streams in this process.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Starts a stream of `meeting`'s messages after `after` (or after the
    /// newest one that may be sent now). Once this returns, every message committed later
    /// will be sent: the subscriber is registered with the hub first and
    /// reads its backlog second.
    pub async fn subscribe(
        &self,
        ctx: RequestCtx,
        meeting: Uuid,
        after: Option<Uuid>,
    ) -> Result<MessageStream, ChatError> {
        let slot = self.take_slot()?;
        let mut conn = self.inner.db.conn().await?;
        if db::is_deleted(&mut conn, meeting).await? {
            return Err(ChatError::MeetingGone);
        }
        let cursor = match after {
            Some(id) => Some(cursor_of(&mut conn, meeting, "after", id).await?),
            None => db::stream_start(&mut conn, meeting).await?,
        };
        drop(conn);
        let rx = self.join(meeting).await?;
        let (out, stream) = mpsc::channel(self.inner.config.buffer.max(1));
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(status) = forward(&inner, &ctx, meeting, cursor, rx, &out).await {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(stream))
    }

    /// Wakes `meeting`'s hub, if this process has one.
    pub fn wake(&self, meeting: Uuid) {
        if let Some(hub) = lock(&self.inner.hubs).get(&meeting) {
            hub.wake.notify_one();
        }
    }

    /// Wakes every hub (notifications may have been missed).
    pub fn wake_all(&self) {
        for hub in lock(&self.inner.hubs).values() {
            hub.wake.notify_one();
        }
    }

    fn take_slot(&self) -> Result<Slot, ChatError> {
        let open = self.inner.open.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.inner.clone());
        if open >= self.inner.config.max_subscribers {
            return Err(ChatError::TooManyStreams);
        }
        Ok(slot)
    }

    /// Subscribes to the meeting's hub, starting one (from the newest
    /// message now) if there is none.
    async fn join(&self, meeting: Uuid) -> Result<broadcast::Receiver<Event>, ChatError> {
        if let Some(hub) = lock(&self.inner.hubs).get(&meeting) {
            return Ok(hub.tx.subscribe());
        }
        let start = db::stream_start(&mut *self.inner.db.conn().await?, meeting).await?;
        let mut hubs = lock(&self.inner.hubs);
        if let Some(hub) = hubs.get(&meeting) {
            return Ok(hub.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.inner.config.buffer.max(1));
        let hub = Arc::new(Hub {
            tx,
            wake: Notify::new(),
        });
        hubs.insert(meeting, hub.clone());
        tokio::spawn(run_hub(self.inner.clone(), meeting, hub, start));
        Ok(rx)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One subscriber: its backlog from Postgres, then the hub's broadcast
/// (skipping what the backlog already sent), until the meeting is deleted,
/// the client goes, the subscriber falls behind, or the server stops.
async fn forward(
    inner: &Inner,
    ctx: &RequestCtx,
    meeting: Uuid,
    mut cursor: Option<Cursor>,
    mut rx: broadcast::Receiver<Event>,
    out: &mpsc::Sender<Result<pb::ChatMessage, Status>>,
) -> Result<(), Status> {
    loop {
        let (rows, more) = read_ready(inner, meeting, cursor).await?;
        let Some(last) = rows.last().map(MessageRow::cursor) else {
            break;
        };
        for message in messages_pb(&inner.users, ctx, rows).await? {
            if out.send(Ok(message)).await.is_err() {
                return Ok(());
            }
        }
        cursor = Some(last);
        if !more {
            // The rest comes from the hub (registered before this read).
            break;
        }
    }
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            () = out.closed() => return Ok(()),
            () = inner.shutdown.clone().wait() => return Ok(()),
        };
        match event {
            Ok(Event::Message(at, message)) => {
                if cursor.is_some_and(|c| at <= c) {
                    continue;
                }
                cursor = Some(at);
                if out.send(Ok((*message).clone())).await.is_err() {
                    return Ok(());
                }
            }
            Ok(Event::Ended) => return Err(Status::not_found("meeting deleted")),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Err(Status::resource_exhausted(
                    "subscriber too slow: resume after the last message received",
                ));
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// The messages after `cursor` that may be sent now (up to the first that
/// may not), and whether more may follow at once (a full page, unblocked).
async fn read_ready(
    inner: &Inner,
    meeting: Uuid,
    cursor: Option<Cursor>,
) -> Result<(Vec<MessageRow>, bool), ChatError> {
    let rows = {
        let mut conn = inner.db.conn().await?;
        db::after_with_delivery(&mut conn, meeting, cursor, PAGE).await?
    };
    let full = rows.len() == PAGE as usize;
    let mut ready = Vec::with_capacity(rows.len());
    let mut held = false;
    for (row, delivery) in rows {
        match delivery {
            Delivery::Applied => ready.push(row),
            Delivery::Held => {
                held = true;
                ready.push(row);
            }
            Delivery::Pending => return Ok((hold_if(inner, held, ready), false)),
        }
    }
    Ok((hold_if(inner, held, ready), full))
}

/// Before a held-for message leaves: this replica's reads are held too,
/// whether or not its outbox listener has heard the poster's NOTIFY yet.
fn hold_if(inner: &Inner, held: bool, ready: Vec<MessageRow>) -> Vec<MessageRow> {
    if held {
        inner.outbox.hold_for_pending();
    }
    ready
}

/// A meeting's reader in this process: on every wake or `poll` tick, reads
/// what was committed after the last message it broadcast; ends when its
/// last subscriber has gone, when the meeting is deleted, or at shutdown.
async fn run_hub(inner: Arc<Inner>, meeting: Uuid, hub: Arc<Hub>, mut cursor: Option<Cursor>) {
    loop {
        match hub_pass(&inner, meeting, &hub, cursor).await {
            Ok(Some(next)) => cursor = next,
            Ok(None) => {
                let _ = hub.tx.send(Event::Ended);
                retire(&inner, meeting, &hub, true);
                return;
            }
            Err(e) => tracing::warn!(%meeting, error = %e, "chat stream read failed; retrying"),
        }
        if retire(&inner, meeting, &hub, false) {
            return;
        }
        tokio::select! {
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(inner.config.poll) => {}
            () = inner.shutdown.clone().wait() => return,
        }
    }
}

/// Broadcasts everything after `cursor`; `Ok(None)` when the meeting was
/// deleted, else the new cursor.
async fn hub_pass(
    inner: &Inner,
    meeting: Uuid,
    hub: &Hub,
    mut cursor: Option<Cursor>,
) -> Result<Option<Option<Cursor>>, ChatError> {
    let ctx = RequestCtx::default();
    loop {
        let (rows, full) = read_ready(inner, meeting, cursor).await?;
        if rows.is_empty() {
            // A deleted meeting has no messages left to read.
            let deleted = db::is_deleted(&mut *inner.db.conn().await?, meeting).await?;
            return Ok((!deleted).then_some(cursor));
        }
        let cursors: Vec<Cursor> = rows.iter().map(MessageRow::cursor).collect();
        let messages = messages_pb(&inner.users, &ctx, rows).await?;
        for (at, message) in cursors.into_iter().zip(messages) {
            // No receiver is not an error: the hub retires below.
            let _ = hub.tx.send(Event::Message(at, Arc::new(message)));
            cursor = Some(at);
        }
        if !full {
            return Ok(Some(cursor));
        }
    }
}

/// Removes the hub when it must stop (`force`) or has no subscriber left;
/// returns whether it was removed. Under the map's lock, so a subscriber
/// either joined before (and the hub stays) or finds no hub and starts one.
fn retire(inner: &Inner, meeting: Uuid, hub: &Arc<Hub>, force: bool) -> bool {
    let mut hubs = lock(&inner.hubs);
    if !force && hub.tx.receiver_count() > 0 {
        return false;
    }
    if hubs.get(&meeting).is_some_and(|h| Arc::ptr_eq(h, hub)) {
        hubs.remove(&meeting);
    }
    true
}

/// Listens on [`db::CHANNEL`] until shutdown, on a connection of its own,
/// reconnecting after a failure or a silence (its heartbeat,
/// `huddle_serve::listener`); every reconnect wakes every hub, since
/// notifications sent meanwhile are lost.
pub async fn listen(hubs: Hubs, shutdown: Shutdown) {
    loop {
        let result = tokio::select! {
            r = listen_once(&hubs) => r,
            () = shutdown.clone().wait() => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "chat listener reconnecting");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}

async fn listen_once(hubs: &Hubs) -> Result<(), listener::ListenError> {
    let db = hubs.inner.db.untracked();
    listener::listen_once(&db, &[db::CHANNEL], HEARTBEAT, |heard| match heard {
        Heard::Listening => hubs.wake_all(),
        Heard::Notification { payload, .. } => match Uuid::parse_str(payload) {
            Ok(meeting) => hubs.wake(meeting),
            Err(_) => hubs.wake_all(),
        },
    })
    .await
}
