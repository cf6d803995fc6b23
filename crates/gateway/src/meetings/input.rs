//! Meeting request bodies and their validation. Every field is taken as raw
//! JSON and checked here, so a wrong type, a bad value or a missing field is a
//! 400 whose message starts with the field's name — serde's own type errors
//! ("invalid type: integer, expected a string at line 1 column 12") do not
//! say which field they mean.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// Same rule as meeting-service's `invite` module (the gateway cannot depend
/// on a service crate): exactly 12 characters of the URL-safe alphabet.
pub const INVITE_CODE_LEN: usize = 12;
/// A `scheduledAt` this far behind the clock still counts as "now".
const PAST_TOLERANCE_SECS: i64 = 60;

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
    let title = string("title", value)?.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > TITLE_MAX_CHARS {
        return Err(ApiError::invalid(
            "title",
            format!("must be 1 to {TITLE_MAX_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "title",
            "must not contain control characters",
        ));
    }
    Ok(title.to_owned())
}

/// Trimmed; empty means none.
pub fn description(value: &Value) -> Result<Option<String>, ApiError> {
    let text = string("description", value)?.trim();
    if text.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(ApiError::invalid(
            "description",
            format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
        ));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// An RFC 3339 timestamp (any offset, converted to UTC) not in the past.
pub fn future_timestamp(field: &str, value: &Value) -> Result<DateTime<Utc>, ApiError> {
    let raw = string(field, value)?;
    let at = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 timestamp, e.g. 2030-01-31T12:00:00Z",
            )
        })?
        .with_timezone(&Utc);
    if at < Utc::now() - chrono::Duration::seconds(PAST_TOLERANCE_SECS) {
        return Err(ApiError::invalid(field, "must not be in the past"));
    }
    Ok(at)
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

/// Exactly [`INVITE_CODE_LEN`] characters of `A-Z a-z 0-9 _ -`, matched as
/// given (case-sensitive).
pub fn invite_code(value: &Value) -> Result<String, ApiError> {
    let code = string("inviteCode", value)?;
    let ok = code.len() == INVITE_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(code.to_owned())
    } else {
        Err(ApiError::invalid(
            "inviteCode",
            format!("must be {INVITE_CODE_LEN} characters of A-Z, a-z, 0-9, '_' or '-'"),
        ))
    }
}

pub fn timestamp_pb(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
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
}
