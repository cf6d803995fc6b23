//! Route patterns for labels. `HttpRequest::match_pattern` runs the router's
//! path regexes again on every call; the metrics middleware asked it on
//! every request (about 3 % of the CPU of a cached read, `make bench`
//! profile). Resources built with [`resource`] carry their pattern instead.

use std::borrow::Cow;

use actix_web::{HttpRequest, Resource, web};

#[derive(Clone, Copy)]
struct RoutePattern(&'static str);

/// `web::resource(pattern)`, remembering the pattern for [`pattern_of`].
pub fn resource(pattern: &'static str) -> Resource {
    web::resource(pattern).app_data(RoutePattern(pattern))
}

/// The pattern of the route that served `req` (`/api/users/{id}`, never
/// the raw path); `None` when no route matched. Read after the resource ran
/// (its data is on the request from then on); other resources fall back to
/// matching the path again.
pub fn pattern_of(req: &HttpRequest) -> Option<Cow<'static, str>> {
    match req.app_data::<RoutePattern>() {
        Some(pattern) => Some(Cow::Borrowed(pattern.0)),
        None => req.match_pattern().map(Cow::Owned),
    }
}
