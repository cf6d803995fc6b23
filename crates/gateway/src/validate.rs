//! Field rules come from `huddle-domain`, the same functions the services
//! call: the gateway checks input before any gRPC call, so a bad request
//! never costs a backend round trip, and each 400 names its field.

use huddle_domain::RuleError;

use crate::error::ApiError;

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        // Displays as `field: problem`.
        Self::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use huddle_domain::{id, user};

    use crate::error::ApiError;

    #[test]
    fn a_broken_rule_is_a_400_naming_its_field() {
        let err = ApiError::from(id::parse("id", "42").unwrap_err());
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.code.as_str(), "INVALID_ARGUMENT");
        assert_eq!(err.message, "id: not a valid uuid");
        let err = ApiError::from(user::image_url("https://a.io/x\u{0}").unwrap_err());
        assert_eq!(err.message, "image: must not contain control characters");
    }
}
