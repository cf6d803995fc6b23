//! A service's view of user-service: display data (name, image) of the
//! users an answer shows (hosts, participants, posters), one
//! `BatchGetUsers` call per answer, never one call per row. user-service
//! reads them through its cached `user` keys, which a profile update
//! invalidates: a card is never older than an acknowledged profile update.

use std::collections::HashMap;

use huddle_common::{
    REQUEST_ID_HEADER,
    grpc_client::{ChannelError, ChannelOptions, GrpcChannel, balanced_channel},
    grpc_metrics::GrpcMetrics,
};
use huddle_proto::user::v1::{BatchGetUsersRequest, user_service_client::UserServiceClient};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use uuid::Uuid;

/// user-service's own limit on ids per call.
const MAX_BATCH: usize = 500;

/// A user as embedded in answers: never the email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCard {
    pub id: Uuid,
    pub name: String,
    pub image: Option<String>,
}

/// The request id of the call being served, carried onto every call it makes.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    request_id: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl RequestCtx {
    pub fn from_request<T>(req: &tonic::Request<T>) -> Self {
        Self {
            request_id: req.metadata().get(REQUEST_ID_HEADER).cloned(),
        }
    }

    pub fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    fn outgoing<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(REQUEST_ID_HEADER, id.clone());
        }
        request
    }
}

/// A channel to another service: lazy (a service starts while its peers
/// are still coming up), balanced over every address the name resolves to
/// (headless Service in Kubernetes), each call bounded by `call_timeout`
/// and counted in `metrics`.
pub fn peer_channel(
    addr: &str,
    call_timeout: std::time::Duration,
    metrics: GrpcMetrics,
) -> Result<GrpcChannel, ChannelError> {
    balanced_channel(
        addr,
        ChannelOptions {
            request_timeout: Some(call_timeout),
            metrics: Some(metrics),
            ..ChannelOptions::default()
        },
    )
}

/// The client of user-service, over [`peer_channel`].
pub fn user_client(
    addr: &str,
    call_timeout: std::time::Duration,
    metrics: GrpcMetrics,
) -> Result<UserServiceClient<GrpcChannel>, ChannelError> {
    Ok(UserServiceClient::new(peer_channel(
        addr,
        call_timeout,
        metrics,
    )?))
}

#[derive(Clone)]
pub struct Users {
    client: UserServiceClient<GrpcChannel>,
}

impl Users {
    pub fn new(client: UserServiceClient<GrpcChannel>) -> Self {
        Self { client }
    }

    /// Display data of `ids` (duplicates allowed), in one call (one per 500
    /// distinct ids). Users unknown to user-service are absent from the map.
    pub async fn cards(
        &self,
        ctx: &RequestCtx,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<HashMap<Uuid, UserCard>, tonic::Status> {
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut cards = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH) {
            let request = ctx.outgoing(BatchGetUsersRequest {
                ids: chunk.iter().map(Uuid::to_string).collect(),
            });
            let users = self
                .client
                .clone()
                .batch_get_users(request)
                .await?
                .into_inner()
                .users;
            for user in users {
                if let Ok(id) = Uuid::parse_str(&user.id) {
                    cards.insert(
                        id,
                        UserCard {
                            id,
                            name: user.name,
                            image: user.image,
                        },
                    );
                }
            }
        }
        Ok(cards)
    }

    /// Whether `id` is a registered user (creating or joining a meeting needs
    /// a real user behind the token).
    pub async fn exists(&self, ctx: &RequestCtx, id: Uuid) -> Result<bool, tonic::Status> {
        Ok(self.cards(ctx, [id]).await?.contains_key(&id))
    }
}
