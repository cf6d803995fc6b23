//! Meeting request bodies and their validation. Every field is taken as raw
//! JSON and checked here, so a wrong type, a bad value or a missing field is a
//! 400 whose message starts with the field's name — serde's own type errors
//! ("invalid type: integer, expected a string at line 1 column 12") do not
//! say which field they mean.

use chrono::{DateTime, Utc};
use huddle_domain::{invite_code as code_rule, meeting, time};
use huddle_proto::meeting::v1 as pb;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// Create a meeting; the caller is its host.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateMeetingBody {
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "Weekly sync", min_length = 1, max_length = 200)]
    pub title: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, max_length = 2000)]
    pub description: Option<Value>,
    /// RFC 3339, not in the past. Required unless `status` is `LIVE`
    /// (an instant meeting, scheduled now).
    #[serde(default)]
    #[schema(value_type = String, format = DateTime, required = false, example = "2030-01-31T12:00:00Z")]
    pub scheduled_at: Option<Value>,
    /// `SCHEDULED` (default) or `LIVE`; `null` is refused, not read as absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, example = "SCHEDULED")]
    pub status: Option<Option<Value>>,
}

/// Change a meeting (host only). Fields left out are not changed;
/// `"description": null` removes the description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateMeetingBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 200)]
    pub title: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, nullable, max_length = 2000)]
    pub description: Option<Option<Value>>,
    /// Only while SCHEDULED; not in the past.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub scheduled_at: Option<Option<Value>>,
    /// One step forward only: SCHEDULED → LIVE → ENDED (the current status
    /// is accepted and changes nothing).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, example = "LIVE")]
    pub status: Option<Option<Value>>,
    /// `true` replaces the invite code; the old one stops working at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    pub rotate_invite_code: Option<Option<Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinMeetingBody {
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "q3Xk_9LmP-2a", min_length = 12, max_length = 12)]
    pub invite_code: Option<Value>,
}

/// Tells `"field": null` (`Some(None)`) apart from a missing field (`None`).
fn present<'de, D>(deserializer: D) -> Result<Option<Option<Value>>, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<Value>::deserialize(deserializer).map(Some)
}

/// The meeting status values of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusInput {
    Scheduled,
    Live,
    Ended,
}

pub fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| ApiError::invalid(field, "must be a string"))
}

pub fn required<'a>(field: &str, value: Option<&'a Value>) -> Result<&'a Value, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::invalid(field, "is required")),
        Some(v) => Ok(v),
    }
}

/// A PATCH field that may be left out but not set to null.
pub fn not_null<'a>(
    field: &str,
    value: &'a Option<Option<Value>>,
) -> Result<Option<&'a Value>, ApiError> {
    match value {
        None => Ok(None),
        Some(None) => Err(ApiError::invalid(field, "must not be null")),
        Some(Some(v)) => Ok(Some(v)),
    }
}

pub fn title(value: &Value) -> Result<String, ApiError> {
    Ok(meeting::title(string("title", value)?)?)
}

/// Trimmed; empty means none.
pub fn description(value: &Value) -> Result<Option<String>, ApiError> {
    Ok(meeting::description(string("description", value)?)?)
}

/// An RFC 3339 timestamp (any offset, converted to UTC) not in the past.
pub fn future_timestamp(field: &'static str, value: &Value) -> Result<DateTime<Utc>, ApiError> {
    let at = time::parse_rfc3339(field, string(field, value)?)?;
    Ok(meeting::not_in_past(field, at, Utc::now())?)
}

pub fn status(value: &Value) -> Result<StatusInput, ApiError> {
    match string("status", value)? {
        "SCHEDULED" => Ok(StatusInput::Scheduled),
        "LIVE" => Ok(StatusInput::Live),
        "ENDED" => Ok(StatusInput::Ended),
        _ => Err(ApiError::invalid(
            "status",
            "must be one of SCHEDULED, LIVE, ENDED",
        )),
    }
}

pub fn boolean(field: &str, value: &Value) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| ApiError::invalid(field, "must be true or false"))
}

/// Matched as given (case-sensitive, never trimmed).
pub fn invite_code(value: &Value) -> Result<String, ApiError> {
    Ok(code_rule::parse(string(code_rule::FIELD, value)?)?.to_owned())
}

fn status_pb(status: StatusInput) -> i32 {
    match status {
        StatusInput::Scheduled => pb::MeetingStatus::Scheduled,
        StatusInput::Live => pb::MeetingStatus::Live,
        StatusInput::Ended => pb::MeetingStatus::Ended,
    }
    .into()
}

/// The gRPC request of `POST /api/meetings`, every field checked.
pub fn create_request(
    caller: Uuid,
    body: CreateMeetingBody,
) -> Result<pb::CreateMeetingRequest, ApiError> {
    let title = title(required("title", body.title.as_ref())?)?;
    let description = match &body.description {
        None | Some(Value::Null) => None,
        Some(v) => description(v)?,
    };
    // Absent means SCHEDULED; `null` is not a status (the document says so).
    let status = not_null("status", &body.status)?
        .map(status)
        .transpose()?
        .unwrap_or(StatusInput::Scheduled);
    if status == StatusInput::Ended {
        return Err(ApiError::invalid(
            "status",
            "a new meeting is SCHEDULED or LIVE",
        ));
    }
    let scheduled_at = match &body.scheduled_at {
        None | Some(Value::Null) if status == StatusInput::Live => None,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "scheduledAt",
                "is required for a SCHEDULED meeting",
            ));
        }
        Some(v) => Some(time::to_proto(future_timestamp("scheduledAt", v)?)),
    };
    Ok(pb::CreateMeetingRequest {
        caller_id: caller.to_string(),
        title,
        description,
        scheduled_at,
        status: status_pb(status),
    })
}

/// The gRPC request of `PATCH /api/meetings/{id}`; an empty change is a
/// 400, as is a field set to null that cannot be cleared.
pub fn update_request(
    caller: Uuid,
    id: Uuid,
    body: UpdateMeetingBody,
) -> Result<pb::UpdateMeetingRequest, ApiError> {
    let title = not_null("title", &body.title)?.map(title).transpose()?;
    let (description, clear_description) = match &body.description {
        None => (None, false),
        Some(None) => (None, true),
        Some(Some(v)) => match description(v)? {
            Some(text) => (Some(text), false),
            // An empty description removes it.
            None => (None, true),
        },
    };
    let scheduled_at = not_null("scheduledAt", &body.scheduled_at)?
        .map(|v| future_timestamp("scheduledAt", v).map(time::to_proto))
        .transpose()?;
    let status = not_null("status", &body.status)?.map(status).transpose()?;
    let rotate_invite_code = not_null("rotateInviteCode", &body.rotate_invite_code)?
        .map(|v| boolean("rotateInviteCode", v))
        .transpose()?
        .unwrap_or(false);
    if title.is_none()
        && description.is_none()
        && !clear_description
        && scheduled_at.is_none()
        && status.is_none()
        && !rotate_invite_code
    {
        return Err(ApiError::bad_request("nothing to update"));
    }
    Ok(pb::UpdateMeetingRequest {
        caller_id: caller.to_string(),
        id: id.to_string(),
        title,
        description,
        clear_description,
        scheduled_at,
        status: status.map_or(pb::MeetingStatus::Unspecified.into(), status_pb),
        rotate_invite_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.unwrap_err().message
    }

    #[test]
    fn titles_name_their_field() {
        assert_eq!(title(&json!("  Sync ")).unwrap(), "Sync");
        assert!(title(&json!("é".repeat(200))).is_ok());
        assert_eq!(
            message(title(&json!("a".repeat(201)))),
            "title: must be 1 to 200 characters"
        );
        assert_eq!(
            message(title(&json!(""))),
            "title: must be 1 to 200 characters"
        );
        assert_eq!(message(title(&json!(5))), "title: must be a string");
    }

    #[test]
    fn timestamps_are_rfc3339_and_not_past() {
        let later = Utc::now() + chrono::Duration::hours(1);
        let parsed = future_timestamp("scheduledAt", &json!(later.to_rfc3339())).unwrap();
        assert_eq!(parsed.timestamp(), later.timestamp());
        let offset = (later + chrono::Duration::hours(2))
            .with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap())
            .to_rfc3339();
        assert!(future_timestamp("scheduledAt", &json!(offset)).is_ok());
        for bad in [
            json!("tomorrow"),
            json!("2030-13-01T00:00:00Z"),
            json!(1_900_000_000),
        ] {
            assert!(
                message(future_timestamp("scheduledAt", &bad)).starts_with("scheduledAt: "),
                "{bad}"
            );
        }
        assert_eq!(
            message(future_timestamp(
                "scheduledAt",
                &json!("2001-01-01T00:00:00Z")
            )),
            "scheduledAt: must not be in the past"
        );
    }

    #[test]
    fn statuses_are_the_three_names() {
        assert_eq!(status(&json!("LIVE")).unwrap(), StatusInput::Live);
        for bad in [json!("live"), json!("PAUSED"), json!(2)] {
            assert!(message(status(&bad)).starts_with("status: "), "{bad}");
        }
    }

    #[test]
    fn invite_codes_are_twelve_url_safe_characters() {
        assert!(invite_code(&json!("AZaz09-_AZaz")).is_ok());
        for bad in [
            json!(""),
            json!("short"),
            json!("abcdefghijk*"),
            json!("abcdefghijklm"),
            json!("abcdefghijk:"),
            json!("abcdéfghijk"),
            json!(123_456_789_012_u64),
        ] {
            assert!(
                message(invite_code(&bad)).starts_with("inviteCode: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn patch_fields_tell_null_from_missing() {
        let body: UpdateMeetingBody =
            serde_json::from_value(json!({"description": null, "title": "x"})).unwrap();
        assert_eq!(body.description, Some(None));
        assert!(body.status.is_none());
        assert_eq!(
            message(not_null("title", &Some(None))),
            "title: must not be null"
        );
        assert!(serde_json::from_value::<UpdateMeetingBody>(json!({"hostId": "x"})).is_err());
    }

    fn create(body: serde_json::Value) -> Result<pb::CreateMeetingRequest, ApiError> {
        create_request(Uuid::nil(), serde_json::from_value(body).unwrap())
    }

    fn update(body: serde_json::Value) -> Result<pb::UpdateMeetingRequest, ApiError> {
        update_request(
            Uuid::nil(),
            Uuid::nil(),
            serde_json::from_value(body).unwrap(),
        )
    }

    #[test]
    fn create_needs_a_time_unless_live() {
        let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let req = create(json!({"title": " Sync ", "scheduledAt": later})).unwrap();
        assert_eq!(req.title, "Sync");
        assert_eq!(req.status, i32::from(pb::MeetingStatus::Scheduled));
        assert!(req.scheduled_at.is_some());
        let req = create(json!({"title": "Now", "status": "LIVE"})).unwrap();
        assert!(req.scheduled_at.is_none());
        assert_eq!(
            create(json!({"title": "x"})).unwrap_err().message,
            "scheduledAt: is required for a SCHEDULED meeting"
        );
        assert_eq!(
            create(json!({"title": "x", "status": "ENDED"}))
                .unwrap_err()
                .message,
            "status: a new meeting is SCHEDULED or LIVE"
        );
        assert_eq!(
            create(json!({"status": "LIVE"})).unwrap_err().message,
            "title: is required"
        );
    }

    #[test]
    fn patch_reads_every_field_and_refuses_empty() {
        let req = update(json!({"description": null, "status": "LIVE"})).unwrap();
        assert!(req.clear_description);
        assert_eq!(req.status, i32::from(pb::MeetingStatus::Live));
        let req = update(json!({"rotateInviteCode": true})).unwrap();
        assert!(req.rotate_invite_code);
        assert_eq!(update(json!({})).unwrap_err().message, "nothing to update");
        assert_eq!(
            update(json!({"rotateInviteCode": false}))
                .unwrap_err()
                .message,
            "nothing to update"
        );
        assert_eq!(
            update(json!({"rotateInviteCode": "yes"}))
                .unwrap_err()
                .message,
            "rotateInviteCode: must be true or false"
        );
        assert_eq!(
            update(json!({"title": null})).unwrap_err().message,
            "title: must not be null"
        );
    }
}
