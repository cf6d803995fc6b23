//! The service checks its input itself, whoever calls it, with the same
//! rules the gateway applies first (`huddle-domain`); a broken rule is an
//! `InvalidArgument` naming the field. What is left here is the wire side:
//! proto timestamps and status numbers.

use chrono::{DateTime, Utc};
use huddle_domain::{RuleError, meeting, time};
use huddle_proto::meeting::v1 as pb;

use crate::{db::Status, error::MeetingError};

impl From<RuleError> for MeetingError {
    fn from(e: RuleError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

/// A `scheduledAt` from the wire: a representable instant, not in the past.
pub fn scheduled_at(ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, MeetingError> {
    let at = time::from_proto_field("scheduledAt", ts)?;
    Ok(meeting::not_in_past("scheduledAt", at, Utc::now())?)
}

/// `UNSPECIFIED` is "not given"; an unknown number is bad input.
pub fn status(raw: i32) -> Result<Option<Status>, MeetingError> {
    match pb::MeetingStatus::try_from(raw) {
        Ok(pb::MeetingStatus::Unspecified) => Ok(None),
        Ok(pb::MeetingStatus::Scheduled) => Ok(Some(Status::Scheduled)),
        Ok(pb::MeetingStatus::Live) => Ok(Some(Status::Live)),
        Ok(pb::MeetingStatus::Ended) => Ok(Some(Status::Ended)),
        Err(_) => Err(MeetingError::InvalidArgument(
            "status: must be one of SCHEDULED, LIVE, ENDED".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_times_must_be_representable_and_not_past() {
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            scheduled_at(&bad).unwrap_err().to_string(),
            "scheduledAt: not a valid timestamp"
        );
        let now = time::to_proto(Utc::now());
        assert!(scheduled_at(&now).is_ok());
        let old = time::to_proto(Utc::now() - chrono::Duration::hours(1));
        assert_eq!(
            scheduled_at(&old).unwrap_err().to_string(),
            "scheduledAt: must not be in the past"
        );
    }

    #[test]
    fn unknown_status_numbers_are_bad_input() {
        assert_eq!(status(0).unwrap(), None);
        assert_eq!(status(2).unwrap(), Some(Status::Live));
        assert!(status(9).unwrap_err().to_string().starts_with("status:"));
    }
}
