//! `/api/meetings/{id}/chats…`: the recent window, posting, history pages
//! and the live stream (`chats/stream.rs`). Who may do what is decided by
//! meeting-service's cached access check (`meetings::access`), asked before
//! chat-service, which trusts the gateway's word.

mod stream;

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_domain::{chat, id as ids, time as clock};
use huddle_proto::chat::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub use self::stream::*;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::meetings::{access, dto::UserRef, in_live_meeting, input};
use crate::request_id::RequestId;
use crate::route::resource;
use crate::{Backends, Success, success};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/meetings/{id}/chats")
            .route(web::get().to(recent_chats))
            .route(web::post().to(post_chat)),
    )
    .service(resource("/api/meetings/{id}/chats/history").route(web::get().to(chat_history)))
    .service(resource("/api/meetings/{id}/chats/stream").route(web::get().to(stream_chats)));
}

/// A chat message as every chat route shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub meeting_id: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub sent_at: String,
    /// The poster, with their current name.
    pub user: UserRef,
}

impl TryFrom<pb::ChatMessage> for ChatMessage {
    type Error = ApiError;

    fn try_from(m: pb::ChatMessage) -> Result<Self, ApiError> {
        let broken = |what: &str| {
            tracing::error!(what, "chat-service returned a malformed message");
            ApiError::internal()
        };
        let sent_at = m
            .sent_at
            .as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_rfc3339)
            .ok_or_else(|| broken("sent_at"))?;
        let user = m.user.ok_or_else(|| broken("user"))?;
        Ok(Self {
            id: m.id,
            meeting_id: m.meeting_id,
            message: m.message,
            sent_at,
            user: UserRef {
                id: user.id,
                name: user.name,
                image: user.image,
            },
        })
    }
}

fn messages(list: Vec<pb::ChatMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    list.into_iter().map(ChatMessage::try_from).collect()
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub messages: Vec<ChatMessage>,
    /// Pass as `before` for the next, older page; `null` on the last page.
    #[schema(format = Uuid, required = true)]
    pub next_before: Option<String>,
}

/// Post a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostChatBody {
    /// 1 to 2000 characters after trimming; line breaks and tabs allowed,
    /// other control characters not.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "Can everyone see my screen?", min_length = 1, max_length = 2000)]
    pub message: Option<Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// A message id of this meeting: the page holds the messages before it
    /// (the previous page's `nextBefore`). Absent: the newest.
    #[param(value_type = Option<Uuid>)]
    pub before: Option<String>,
    /// Messages per page, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The caller, who must be a user (an admin token is nobody's participant).
fn caller(principal: &Principal) -> Result<Uuid, ApiError> {
    principal
        .user_id
        .ok_or_else(|| ApiError::forbidden("chat routes need a user token"))
}

/// Host or participant (present or past) may read; anyone else gets the
/// missing meeting's 404.
async fn may_read(
    backends: &Backends,
    rid: &RequestId,
    principal: &Principal,
    raw_id: &str,
) -> Result<Uuid, ApiError> {
    let meeting = ids::parse("id", raw_id)?;
    access(backends, rid, meeting, caller(principal)?).await?;
    Ok(meeting)
}

/// The last 50 messages, oldest first (host or participant).
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/chats",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Meeting id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The last 50 messages, oldest first", body = Success<Vec<ChatMessage>>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant", body = ErrorBody),
    )
)]
pub async fn recent_chats(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meeting = may_read(&backends, &rid, &principal, &id).await?;
    let message = pb::ListRecentRequest {
        meeting_id: meeting.to_string(),
    };
    let list = backends
        .chats()
        .list_recent(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(StatusCode::OK, messages(list.messages)?))
}

/// Post a message (an active participant of a LIVE meeting). Rate limited
/// per user and meeting (429 with `Retry-After`).
#[utoipa::path(
    post,
    path = "/api/meetings/{id}/chats",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Meeting id")),
    request_body = PostChatBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Posted", body = Success<ChatMessage>),
        (status = 400, description = "Invalid input (the message names the field)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not in the meeting now, or the meeting is not LIVE (or not a user token)", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant", body = ErrorBody),
        (status = 429, description = "Too many posts; see Retry-After", body = ErrorBody),
    )
)]
pub async fn post_chat(
    principal: Principal,
    rid: RequestId,
    key: IdempotencyKey,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    body: web::Json<PostChatBody>,
) -> Result<HttpResponse, ApiError> {
    let meeting = ids::parse("id", &id)?;
    let text = chat::message(input::string(
        "message",
        input::required("message", body.message.as_ref())?,
    )?)?;
    let user = caller(&principal)?;
    let allowed = access(&backends, &rid, meeting, user).await?;
    if !in_live_meeting(&allowed) {
        return Err(ApiError::forbidden(
            "only a participant in the meeting while it is LIVE may post",
        ));
    }
    let message = pb::PostMessageRequest {
        meeting_id: meeting.to_string(),
        user_id: user.to_string(),
        message: text,
    };
    let mut request = backends.request(message, &rid);
    key.attach(&mut request);
    let posted = backends.chats().post_message(request).await?.into_inner();
    Ok(success(StatusCode::CREATED, ChatMessage::try_from(posted)?))
}

/// Older messages, newest first, a page at a time (host or participant);
/// never cached.
#[utoipa::path(
    get,
    path = "/api/meetings/{id}/chats/history",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Meeting id"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page, newest first, and where the next starts", body = Success<HistoryPage>),
        (status = 400, description = "Invalid id, `before` or `limit`", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "No such meeting, or the caller is neither host nor participant, or `before` is no message of it", body = ErrorBody),
    )
)]
pub async fn chat_history(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let before = query
        .before
        .as_deref()
        .map(|b| ids::parse("before", b))
        .transpose()?;
    let limit = query
        .limit
        .as_deref()
        .map(|raw| raw.parse::<u64>().unwrap_or(0))
        .map_or(chat::history_limit(None), |n| chat::history_limit(Some(n)))?;
    let meeting = may_read(&backends, &rid, &principal, &id).await?;
    let message = pb::ListHistoryRequest {
        meeting_id: meeting.to_string(),
        before: before.map(|b| b.to_string()),
        limit,
    };
    let page = backends
        .chats()
        .list_history(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        HistoryPage {
            messages: messages(page.messages)?,
            next_before: page.next_before,
        },
    ))
}

/// `_count.chatMessages` of a meeting the caller may read: `None` (shown as
/// `null`, never a made-up 0) when chat-service cannot answer, so a chat
/// outage does not take the meeting page down with it.
pub async fn message_count(backends: &Backends, rid: &RequestId, meeting: Uuid) -> Option<u64> {
    let message = pb::CountMessagesRequest {
        meeting_id: meeting.to_string(),
    };
    match backends
        .chats()
        .count_messages(backends.request(message, rid))
        .await
    {
        Ok(count) => Some(count.into_inner().count),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "chat message count unavailable");
            None
        }
    }
}
