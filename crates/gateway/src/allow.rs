//! Which methods each route serves, for the `Allow` header of a 405. Read
//! from the OpenAPI document, the contract clients are generated from, so a
//! 405 names exactly the methods the document declares (a test checks that
//! the router agrees with it, method by method).

use std::collections::HashMap;

use actix_web::http::Method;
use utoipa::OpenApi;

use crate::openapi::ApiDoc;

/// The routes actix serves that the document does not describe (the Swagger
/// UI and the document itself): read-only.
const UNDOCUMENTED_ALLOW: &str = "GET";

#[derive(Debug, Clone)]
pub struct AllowedMethods {
    by_pattern: HashMap<String, String>,
}

impl AllowedMethods {
    pub fn from_openapi() -> Self {
        let doc = ApiDoc::openapi();
        let by_pattern = doc
            .paths
            .paths
            .into_iter()
            .map(|(path, item)| {
                let declared = [
                    (Method::GET, item.get.is_some()),
                    (Method::HEAD, item.head.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                    (Method::OPTIONS, item.options.is_some()),
                    (Method::TRACE, item.trace.is_some()),
                ];
                let allow: Vec<&str> = declared
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(m, _)| m.as_str())
                    .collect();
                (path, allow.join(", "))
            })
            .collect();
        Self { by_pattern }
    }

    /// The `Allow` value for a matched route pattern (`/api/users/{id}`).
    pub fn allow(&self, pattern: &str) -> &str {
        self.by_pattern
            .get(pattern)
            .map_or(UNDOCUMENTED_ALLOW, String::as_str)
    }

    pub fn patterns(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_pattern
            .iter()
            .map(|(p, a)| (p.as_str(), a.as_str()))
    }
}

/// The method as a metric label: the standard ones by name, anything else
/// `OTHER`, so a client inventing methods cannot create label values.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}
