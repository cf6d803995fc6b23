//! recording-service as a deletion-cascade target (a deleted meeting's
//! recordings and their cache keys go with it) and as the signer of LiveKit
//! room tokens (it alone holds the LiveKit secret).

use futures::future::BoxFuture;
use huddle_common::grpc_client::{ChannelError, GrpcChannel};
use huddle_common::grpc_metrics::GrpcMetrics;
use huddle_proto::recording::v1::{
    DeleteMeetingDataRequest, MintRoomTokenRequest, RoomToken,
    recording_service_client::RecordingServiceClient,
};
use uuid::Uuid;

use crate::CascadeTarget;

#[derive(Clone)]
pub struct Recordings {
    client: RecordingServiceClient<GrpcChannel>,
}

impl Recordings {
    /// Lazy, balanced and metered, like the user-service channel.
    pub fn new(
        addr: &str,
        call_timeout: std::time::Duration,
        metrics: GrpcMetrics,
    ) -> Result<Self, ChannelError> {
        let channel = huddle_serve::users::peer_channel(addr, call_timeout, metrics)?;
        Ok(Self {
            client: RecordingServiceClient::new(channel),
        })
    }
}

impl Recordings {
    /// A room token for `identity` in the meeting's room, signed by
    /// recording-service; the caller has checked who may have one.
    pub async fn mint(
        &self,
        meeting: Uuid,
        identity: Uuid,
        name: &str,
        host: bool,
    ) -> Result<RoomToken, tonic::Status> {
        let request = MintRoomTokenRequest {
            room: meeting.to_string(),
            identity: identity.to_string(),
            name: name.to_owned(),
            host,
        };
        Ok(self
            .client
            .clone()
            .mint_room_token(request)
            .await?
            .into_inner())
    }
}

impl CascadeTarget for Recordings {
    fn service(&self) -> &'static str {
        "recording"
    }

    fn delete_meeting_data(&self, meeting: Uuid) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let request = DeleteMeetingDataRequest {
                meeting_id: meeting.to_string(),
            };
            self.client
                .clone()
                .delete_meeting_data(request)
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }
}
