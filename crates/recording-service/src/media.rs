//! LiveKit room tokens: signed here, the one workload holding the LiveKit
//! secret. Who may have one is meeting-service's decision (it calls
//! `MintRoomToken` after its own checks); this module only signs what it
//! is asked for, with the grants SPEC §3 gives a participant or a host.

use std::time::Duration;

use huddle_domain::{id, time};
use huddle_proto::recording::v1::{MintRoomTokenRequest, RoomToken};
use livekit_api::access_token::{AccessToken, AccessTokenError, Claims, VideoGrants};

use crate::{LivekitKeys, RecordingApi, error::RecordingError};

/// SPEC §3: a room token is valid at most 6 h.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// Where clients reach LiveKit and how long their tokens last.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// `LIVEKIT_URL` (`wss://…`), handed to clients with each token and
    /// dialled for the server APIs; `None`: no LiveKit configured, so no
    /// token can be minted (503).
    pub url: Option<String>,
    /// `LIVEKIT_API_URL`: where this service calls LiveKit's server API
    /// (Twirp over plain HTTP, in the cluster); `None`: `url`.
    pub api_url: Option<String>,
    /// Lifetime of a room token, at most [`MAX_TOKEN_TTL`].
    pub token_ttl: Duration,
    /// Where LiveKit's egress writes a recording (its file output's
    /// `filepath`, with LiveKit's `{room_name}` and `{time}` templates);
    /// the storage itself is LiveKit's egress configuration.
    pub recording_filepath: String,
    /// How long a recording may stay PROCESSING before the reconciliation
    /// pass asks LiveKit about it.
    pub reconcile_after: Duration,
}

/// The default file path template of a recording.
pub const DEFAULT_RECORDING_FILEPATH: &str = "recordings/{room_name}-{time}.mp4";

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_url: None,
            token_ttl: MAX_TOKEN_TTL,
            recording_filepath: DEFAULT_RECORDING_FILEPATH.to_owned(),
            reconcile_after: Duration::from_secs(120),
        }
    }
}

/// One participant's claim on one room.
#[derive(Debug, Clone)]
pub struct RoomGrant<'a> {
    /// A meeting id.
    pub room: &'a str,
    /// A user id.
    pub identity: &'a str,
    pub name: &'a str,
    pub host: bool,
}

/// The grants of SPEC §3: everyone joins, publishes, subscribes and sends
/// data; only the host administers and records the room.
pub fn video_grants(grant: &RoomGrant<'_>) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: grant.room.to_owned(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        room_admin: grant.host,
        room_record: grant.host,
        ..VideoGrants::default()
    }
}

impl LivekitKeys {
    /// A signed room token and its expiry (seconds since the epoch, read
    /// back from the token so the answer says exactly what LiveKit checks).
    pub fn room_token(
        &self,
        grant: &RoomGrant<'_>,
        ttl: Duration,
    ) -> Result<(String, i64), AccessTokenError> {
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_ttl(ttl.min(MAX_TOKEN_TTL))
            .with_identity(grant.identity)
            .with_name(grant.name)
            .with_grants(video_grants(grant))
            .to_jwt()?;
        let exp = Claims::from_unverified(&token)?.exp;
        Ok((token, i64::try_from(exp).unwrap_or(i64::MAX)))
    }
}

impl RecordingApi {
    /// Signs a room token for whom meeting-service named. The room and the
    /// identity must be ids (a token for anything else is no meeting's).
    pub(crate) fn mint(&self, req: &MintRoomTokenRequest) -> Result<RoomToken, RecordingError> {
        let room = id::parse("room", &req.room)?.to_string();
        let identity = id::parse("identity", &req.identity)?.to_string();
        let url = self.media.url.clone().ok_or_else(|| {
            RecordingError::MediaUnavailable("LiveKit is not configured (LIVEKIT_URL)".to_owned())
        })?;
        let grant = RoomGrant {
            room: &room,
            identity: &identity,
            name: &req.name,
            host: req.host,
        };
        let (token, exp) = self
            .keys
            .room_token(&grant, self.media.token_ttl)
            .map_err(|e| {
                tracing::error!(error = %e, "room token not signed");
                RecordingError::MediaUnavailable(
                    "LiveKit room token could not be signed".to_owned(),
                )
            })?;
        let expires_at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_default();
        Ok(RoomToken {
            url,
            token,
            expires_at: Some(time::to_proto(expires_at)),
        })
    }
}

#[cfg(test)]
mod tests {
    use livekit_api::access_token::TokenVerifier;

    use super::*;

    fn keys() -> LivekitKeys {
        LivekitKeys {
            api_key: "APIkey".to_owned(),
            api_secret: "a-secret-of-at-least-32-bytes-0123456789".to_owned(),
        }
    }

    #[test]
    fn host_alone_gets_admin_and_record_and_the_lifetime_is_capped() {
        let keys = keys();
        let verifier = TokenVerifier::with_api_key(&keys.api_key, &keys.api_secret);
        let mut grant = RoomGrant {
            room: "m1",
            identity: "u1",
            name: "Ann",
            host: false,
        };
        let (token, exp) = keys
            .room_token(&grant, Duration::from_secs(7 * 3600))
            .unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("u1", "Ann"));
        assert_eq!(claims.iss, "APIkey");
        assert!(claims.video.room_join && claims.video.room == "m1");
        assert!(!claims.video.room_admin && !claims.video.room_record);
        assert_eq!(exp as usize, claims.exp);
        assert!(claims.exp - claims.nbf <= MAX_TOKEN_TTL.as_secs() as usize);

        grant.host = true;
        let (token, _) = keys.room_token(&grant, Duration::from_secs(60)).unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert!(claims.video.room_admin && claims.video.room_record);
        assert!(claims.exp - claims.nbf <= 60);
    }
}
