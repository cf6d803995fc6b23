//! A user as a cached meeting value refers to one: the id, never the card.
//!
//! The shape change from embedded cards to ids needs no new key prefix; the
//! field that held a card holds the id now, and the two shapes are kept
//! apart by decoding:
//! - a value written before the change (`"host": {"id", "name", "image"}`)
//!   decodes here as its id: the card in it is ignored and composed afresh,
//!   so a rollout starts warm and no old name is ever shown;
//! - a value written after it (`"host": "<id>"`) does not decode in a binary
//!   from before (it expects an object): that binary loads from Postgres
//!   without filling (cache-core's "undecodable cached value"), rather than
//!   misread a missing card as "no host".
//!
//! An old value whose card was `null` (the user unknown to user-service at
//! load time) does not decode either, and is loaded and refilled by its TTL.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserRef(pub Uuid);

impl Serialize for UserRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Id(Uuid),
            /// The card values written before ids embedded.
            Card {
                id: Uuid,
            },
        }
        Ok(Self(match Stored::deserialize(deserializer)? {
            Stored::Id(id) | Stored::Card { id } => id,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::cache::{CachedMeeting, LiveItem, ParticipantItem};

    const ID: &str = "8c1b1f7e-6a55-4a8a-9d0c-2d1f1f8f0a11";

    fn meeting_row() -> serde_json::Value {
        json!({
            "id": ID, "title": "t", "description": null, "status": "LIVE",
            "host_id": ID, "invite_code": "abc-def-ghj",
            "scheduled_at": "2026-01-01T00:00:00Z", "started_at": null,
            "ended_at": null, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        })
    }

    /// What a binary from before ids stored, and its reading of `host`.
    #[derive(Deserialize)]
    struct OldCard {
        #[allow(dead_code)]
        id: Uuid,
        #[allow(dead_code)]
        name: String,
    }

    #[derive(Deserialize)]
    struct OldMeeting {
        #[allow(dead_code)]
        meeting: serde_json::Value,
        #[allow(dead_code)]
        host: Option<OldCard>,
    }

    /// Seen to fail with the `Card` form refused: both old-value tests
    /// panicked decoding (`Error("card")`), i.e. a rollout would start cold.
    #[test]
    fn an_old_value_decodes_as_its_ids_and_drops_the_card() {
        let card = json!({"id": ID, "name": "Old Name", "image": null});
        let old = json!({"meeting": meeting_row(), "host": card});
        let read: CachedMeeting = serde_json::from_value(old).unwrap();
        assert_eq!(read.host, UserRef(ID.parse().unwrap()));
        let old_item = json!({
            "id": ID, "title": "t", "scheduled_at": "2026-01-01T00:00:00Z",
            "started_at": null, "host": card, "participants": 3
        });
        let read: LiveItem = serde_json::from_value(old_item).unwrap();
        assert_eq!(read.host.0.to_string(), ID);
        // Re-encoded, nothing of the card is left.
        assert!(!serde_json::to_string(&read).unwrap().contains("Old Name"));
    }

    /// Seen to fail with the id written as a card-shaped object: the value
    /// read as `{"id": …, "name": ""}`, which the old binary would show.
    #[test]
    fn a_new_value_is_undecodable_for_a_binary_from_before() {
        let id: Uuid = ID.parse().unwrap();
        let new = serde_json::to_value(CachedMeeting {
            meeting: serde_json::from_value(meeting_row()).unwrap(),
            host: UserRef(id),
        })
        .unwrap();
        assert_eq!(new["host"], ID);
        // Decoded as the old shape it would have said "no host".
        assert!(serde_json::from_value::<OldMeeting>(new).is_err());
    }

    #[test]
    fn a_participant_item_keeps_only_the_id() {
        let row = json!({
            "id": ID, "meeting_id": ID, "user_id": ID,
            "joined_at": "2026-01-01T00:00:00Z", "left_at": null
        });
        let old = json!({"participant": row, "user": {"id": ID, "name": "Old Name"}});
        let read: ParticipantItem = serde_json::from_value(old).unwrap();
        assert_eq!(read.user.0, read.participant.user_id);
    }
}
