//! The service checks its input itself, whoever calls it, with the same
//! rules the gateway applies first (`huddle-domain`); a broken rule is an
//! `InvalidArgument` naming the field.

use huddle_domain::RuleError;

use crate::error::UserError;

impl From<RuleError> for UserError {
    fn from(e: RuleError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}
