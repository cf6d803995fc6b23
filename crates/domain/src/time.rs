//! Timestamps: chrono inside, `google.protobuf.Timestamp` on the wire,
//! RFC 3339 UTC with milliseconds in JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;

use crate::RuleError;

pub fn to_proto(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        // Below 2e9 even for a leap second, so it always fits.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `None` when the message holds no representable instant (negative or
/// out-of-range nanos, seconds beyond chrono's range).
pub fn from_proto(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(ts.seconds, nanos)
}

/// [`from_proto`] for input: an unrepresentable value is the caller's error.
pub fn from_proto_field(field: &'static str, ts: &Timestamp) -> Result<DateTime<Utc>, RuleError> {
    from_proto(ts).ok_or(RuleError::Timestamp { field })
}

/// An RFC 3339 timestamp with any offset, converted to UTC.
pub fn parse_rfc3339(field: &'static str, raw: &str) -> Result<DateTime<Utc>, RuleError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| RuleError::Rfc3339 { field })
}

/// The API's timestamp format: RFC 3339, UTC, milliseconds, `Z`.
pub fn to_rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn proto_round_trip_keeps_nanoseconds() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let ts = to_proto(at);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
        assert_eq!(from_proto(&ts), Some(at));
        assert_eq!(to_rfc3339(at), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn unrepresentable_proto_timestamps_are_refused() {
        for (seconds, nanos) in [(0, -1), (0, 2_000_000_000), (i64::MAX, 0)] {
            let ts = Timestamp { seconds, nanos };
            assert_eq!(from_proto(&ts), None, "{ts:?}");
            assert_eq!(
                from_proto_field("scheduledAt", &ts)
                    .unwrap_err()
                    .to_string(),
                "scheduledAt: not a valid timestamp"
            );
        }
    }

    #[test]
    fn rfc3339_input_takes_any_offset() {
        let at = parse_rfc3339("scheduledAt", " 2030-01-31T14:00:00+02:00 ").unwrap();
        assert_eq!(to_rfc3339(at), "2030-01-31T12:00:00.000Z");
        for bad in [
            "tomorrow",
            "2030-13-01T00:00:00Z",
            "",
            "2030-01-31T12:00:00Z\u{0}",
        ] {
            assert_eq!(
                parse_rfc3339("scheduledAt", bad).unwrap_err().to_string(),
                "scheduledAt: must be an RFC 3339 timestamp, e.g. 2030-01-31T12:00:00Z",
                "{bad:?}"
            );
        }
    }
}
