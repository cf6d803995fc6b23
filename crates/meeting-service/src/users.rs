//! The meeting service's view of user-service: the kit's client
//! (`huddle_serve::users`), shared with every service that shows users.

pub use huddle_serve::users::{RequestCtx, UserCard, Users, user_client};
