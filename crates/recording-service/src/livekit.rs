//! LiveKit's side of the contract: the keys webhooks are signed with, the
//! verifying receiver (the `livekit-api` crate's own), and signing and
//! building webhooks exactly as a LiveKit server does — for
//! `huddle livekit-webhook` and the tests.

use std::time::Duration;

use base64_livekit::Engine;
use livekit_api::access_token::{AccessToken, AccessTokenError, TokenVerifier};
use livekit_api::webhooks::WebhookReceiver;
pub use livekit_protocol::EgressStatus;
use livekit_protocol::{EgressInfo, FileInfo, WebhookEvent};
use sha2_livekit::{Digest, Sha256};

/// How long a webhook's token is valid (LiveKit server signs for 5 min).
pub const WEBHOOK_TOKEN_TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct LivekitKeys {
    pub api_key: String,
    pub api_secret: String,
}

/// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for LivekitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivekitKeys")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

impl LivekitKeys {
    /// Checks a webhook's HS256 token, its `iss` (= API key), expiry, and
    /// its `sha256` claim against the body.
    pub fn receiver(&self) -> WebhookReceiver {
        WebhookReceiver::new(TokenVerifier::with_api_key(&self.api_key, &self.api_secret))
    }

    /// The `Authorization` header LiveKit sends with `body`.
    pub fn sign(&self, body: &[u8]) -> Result<String, AccessTokenError> {
        AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_ttl(WEBHOOK_TOKEN_TTL)
            .with_sha256(&body_sha256(body))
            .to_jwt()
    }
}

/// The `sha256` claim: base64 (standard, padded) of the body's SHA-256.
pub fn body_sha256(body: &[u8]) -> String {
    base64_livekit::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
}

/// What an egress webhook says about one egress.
#[derive(Debug, Clone)]
pub struct EgressWebhook {
    /// `egress_started`, `egress_updated` or `egress_ended`.
    pub event: String,
    /// The LiveKit room: a meeting id.
    pub room: String,
    pub egress_id: String,
    pub status: EgressStatus,
    pub started_at_ns: i64,
    pub ended_at_ns: i64,
    /// The file result: location, duration (ns), size (bytes).
    pub file: Option<(String, i64, i64)>,
    pub error: String,
    /// The webhook's own time, seconds.
    pub created_at: i64,
}

impl EgressWebhook {
    /// The JSON body LiveKit would post (its own types and serializer).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let file_results = self
            .file
            .iter()
            .map(|(location, duration, size)| FileInfo {
                filename: location.rsplit('/').next().unwrap_or_default().to_owned(),
                location: location.clone(),
                duration: *duration,
                size: *size,
                started_at: self.started_at_ns,
                ended_at: self.ended_at_ns,
            })
            .collect();
        let event = WebhookEvent {
            event: self.event.clone(),
            egress_info: Some(EgressInfo {
                egress_id: self.egress_id.clone(),
                room_name: self.room.clone(),
                status: self.status.into(),
                started_at: self.started_at_ns,
                ended_at: self.ended_at_ns,
                updated_at: self.ended_at_ns.max(self.started_at_ns),
                file_results,
                error: self.error.clone(),
                ..EgressInfo::default()
            }),
            id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
            created_at: self.created_at,
            ..WebhookEvent::default()
        };
        serde_json::to_string(&event)
    }
}
