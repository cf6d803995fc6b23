//! The tonic implementation of `huddle.chat.v1.ChatService`: validate, read
//! through the cache, write then apply the outbox entry (which appends the
//! message to a cached window).

use cache_core::{Cache, Invalidation};
use diesel_async::AsyncConnection;
use huddle_db::Database;
use huddle_domain::{chat, id, time};
use huddle_proto::chat::v1::{
    self as pb, ChatMessages, CountMessagesRequest, DeleteMeetingDataRequest,
    DeleteMeetingDataResponse, HistoryPage, ListHistoryRequest, ListRecentRequest, MessageCount,
    PostMessageRequest, SubscribeRequest, chat_service_server::ChatService,
};
use huddle_serve::{
    IdempotencyKey, Outbox, Settled, idempotency, to_completion,
    users::{RequestCtx, Users},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    cache::{self, WindowMessage},
    db::{self, MessageRow},
    error::ChatError,
    stream::{Hubs, MessageStream},
};

#[derive(Clone)]
pub struct ChatApi {
    db: Database,
    cache: Cache,
    outbox: Outbox,
    users: Users,
    hubs: Hubs,
}

impl ChatApi {
    pub fn new(db: Database, cache: Cache, outbox: Outbox, users: Users, hubs: Hubs) -> Self {
        Self {
            db,
            cache,
            outbox,
            users,
            hubs,
        }
    }

    async fn post(
        &self,
        request: Request<PostMessageRequest>,
    ) -> Result<pb::ChatMessage, ChatError> {
        let ctx = &RequestCtx::from_request(&request);
        let key = IdempotencyKey::of(&request, "PostMessage", &request.get_ref().user_id)?;
        let req = request.into_inner();
        let meeting = id::parse("meetingId", &req.meeting_id)?;
        let user = id::parse("userId", &req.user_id)?;
        let text = chat::message(&req.message)?;
        // Before the write: a post whose poster cannot be shown fails whole.
        let cards = self.users.cards(ctx, [user]).await?;
        let mut conn = self.db.conn().await?;
        let (answer, settle) = conn
            .transaction::<_, ChatError, _>(async |conn| {
                // A replay answers the first post, with the poster's card as
                // it is now (user-service's data, composed per answer: a
                // rename acknowledged since must show).
                if let Some(mut first) =
                    idempotency::claim::<pb::ChatMessage>(key.as_ref(), conn).await?
                {
                    if let (Some(kept), Some(card)) = (first.user.as_mut(), cards.get(&user)) {
                        kept.name.clone_from(&card.name);
                        kept.image.clone_from(&card.image);
                    }
                    return Ok((first, None));
                }
                let sent_at = db::next_sent_at(conn, meeting)
                    .await?
                    .ok_or(ChatError::MeetingGone)?;
                let row = MessageRow {
                    id: Uuid::new_v4(),
                    meeting_id: meeting,
                    user_id: user,
                    message: text,
                    sent_at,
                };
                let entry = WindowMessage::from(&row).entry()?;
                let invalidation = Invalidation::chat_message(meeting, Some(entry));
                let recorded = Outbox::record(conn, invalidation).await?;
                db::insert(conn, &row, Some(recorded.id())).await?;
                let id = row.id;
                let answer = message_pb(row, &cards);
                idempotency::keep(key.as_ref(), conn, &answer).await?;
                Ok((answer, Some((id, recorded))))
            })
            .await?;
        drop(conn);
        if let Some((id, recorded)) = settle {
            self.settle(meeting, id, recorded).await?;
        }
        Ok(answer)
    }

    /// After a post's commit: applies its cache effects, then tells the
    /// streams (which send a message only once its effects are applied or
    /// held for, so a client shown it never reads a window without it).
    /// In a task of its own, so a cancelled request still gets there.
    async fn settle(
        &self,
        meeting: Uuid,
        message: Uuid,
        recorded: huddle_serve::Recorded,
    ) -> Result<(), ChatError> {
        let (outbox, db) = (self.outbox.clone(), self.db.clone());
        let task = tokio::spawn(async move {
            let settled = outbox.after_commit(recorded).await?;
            let held = match settled {
                Settled::Applied => false,
                Settled::Held => true,
                // Not held on the other replicas: streams wait for a relay
                // to apply it (and find it on their poll).
                Settled::Deferred => return Ok(()),
            };
            let announced =
                async { db::announce(&mut *db.conn().await?, meeting, message, held).await };
            if let Err(e) = announced.await {
                tracing::warn!(%meeting, error = %e, "post not announced; streams find it on their poll");
            }
            Ok::<_, ChatError>(())
        });
        task.await.map_err(|e| {
            ChatError::Db(huddle_db::DbError::Unavailable(format!(
                "post settling failed: {e}"
            )))
        })?
    }

    async fn history(
        &self,
        ctx: &RequestCtx,
        req: ListHistoryRequest,
    ) -> Result<HistoryPage, ChatError> {
        let meeting = id::parse("meetingId", &req.meeting_id)?;
        let before = req
            .before
            .as_deref()
            .map(|b| id::parse("before", b))
            .transpose()?;
        let limit = chat::history_limit((req.limit != 0).then_some(u64::from(req.limit)))?;
        let cursor = match before {
            Some(id) => Some(cursor_of(&mut *self.db.conn().await?, meeting, "before", id).await?),
            None => None,
        };
        let (mut rows, held) = match db::settled_through(&self.db, meeting, cursor).await? {
            None => (Vec::new(), false),
            Some(upto) => {
                db::settled_before(
                    &mut *self.db.conn().await?,
                    meeting,
                    cursor,
                    upto,
                    limit + 1,
                )
                .await?
            }
        };
        if held {
            self.outbox.hold_for_pending();
        }
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_before = more
            .then(|| rows.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(HistoryPage {
            messages: messages_pb(&self.users, ctx, rows).await?,
            next_before,
        })
    }

    async fn delete_data(&self, meeting: Uuid) -> Result<u64, ChatError> {
        let mut conn = self.db.conn().await?;
        let (deleted, recorded) = conn
            .transaction::<_, ChatError, _>(async |conn| {
                let deleted = db::delete_meeting(conn, meeting).await?;
                let recorded =
                    Outbox::record(conn, Invalidation::chat_message(meeting, None)).await?;
                // Ends the meeting's streams on every replica.
                db::notify(conn, meeting).await?;
                Ok((deleted, recorded))
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok(deleted as u64)
    }
}

/// Where message `id` (named `field` in the request) is in `meeting`'s
/// order; a message of another meeting, or none, is NOT_FOUND (a
/// well-formed id that names nothing here).
pub(crate) async fn cursor_of(
    conn: &mut diesel_async::AsyncPgConnection,
    meeting: Uuid,
    field: &str,
    id: Uuid,
) -> Result<db::Cursor, ChatError> {
    let row = db::find(conn, meeting, id).await?.ok_or_else(|| {
        ChatError::NoSuchMessage(format!("{field}: no such message in this meeting"))
    })?;
    Ok(row.cursor())
}

/// Rows with their posters' cards (one user-service call for all).
pub(crate) async fn messages_pb(
    users: &Users,
    ctx: &RequestCtx,
    rows: Vec<MessageRow>,
) -> Result<Vec<pb::ChatMessage>, ChatError> {
    let cards = users.cards(ctx, rows.iter().map(|r| r.user_id)).await?;
    Ok(rows.into_iter().map(|r| message_pb(r, &cards)).collect())
}

fn message_pb(
    row: MessageRow,
    cards: &std::collections::HashMap<Uuid, huddle_serve::users::UserCard>,
) -> pb::ChatMessage {
    let card = cards.get(&row.user_id);
    pb::ChatMessage {
        id: row.id.to_string(),
        meeting_id: row.meeting_id.to_string(),
        user: Some(pb::UserRef {
            id: row.user_id.to_string(),
            name: card.map(|c| c.name.clone()).unwrap_or_default(),
            image: card.and_then(|c| c.image.clone()),
        }),
        message: row.message,
        sent_at: Some(time::to_proto(row.sent_at)),
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    type SubscribeStream = MessageStream;

    async fn post_message(
        &self,
        req: Request<PostMessageRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let this = self.clone();
        to_completion(async move { Ok(Response::new(this.post(req).await?)) }).await
    }

    async fn list_recent(
        &self,
        req: Request<ListRecentRequest>,
    ) -> Result<Response<ChatMessages>, Status> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let meeting = id::parse("meetingId", &req.get_ref().meeting_id)?;
            let rows = cache::recent(&self.cache, &self.db, &self.outbox, meeting).await?;
            Ok(Response::new(ChatMessages {
                messages: messages_pb(&self.users, &ctx, rows).await?,
            }))
        }
        .await
        .map_err(|e: ChatError| Status::from(e))
    }

    async fn list_history(
        &self,
        req: Request<ListHistoryRequest>,
    ) -> Result<Response<HistoryPage>, Status> {
        let ctx = RequestCtx::from_request(&req);
        Ok(Response::new(self.history(&ctx, req.into_inner()).await?))
    }

    async fn count_messages(
        &self,
        req: Request<CountMessagesRequest>,
    ) -> Result<Response<MessageCount>, Status> {
        async {
            let meeting = id::parse("meetingId", &req.get_ref().meeting_id)?;
            let count = cache::count(&self.cache, &self.db, &self.outbox, meeting).await?;
            Ok(Response::new(MessageCount { count }))
        }
        .await
        .map_err(|e: ChatError| Status::from(e))
    }

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let ctx = RequestCtx::from_request(&req);
        async {
            let req = req.get_ref();
            let meeting = id::parse("meetingId", &req.meeting_id)?;
            let after = req
                .after
                .as_deref()
                .map(|a| id::parse("after", a))
                .transpose()?;
            Ok(Response::new(
                self.hubs.subscribe(ctx, meeting, after).await?,
            ))
        }
        .await
        .map_err(|e: ChatError| Status::from(e))
    }

    async fn delete_meeting_data(
        &self,
        req: Request<DeleteMeetingDataRequest>,
    ) -> Result<Response<DeleteMeetingDataResponse>, Status> {
        let meeting = id::parse("meetingId", &req.get_ref().meeting_id).map_err(ChatError::from)?;
        let this = self.clone();
        to_completion(async move {
            let deleted = this.delete_data(meeting).await?;
            Ok(Response::new(DeleteMeetingDataResponse { deleted }))
        })
        .await
    }
}
