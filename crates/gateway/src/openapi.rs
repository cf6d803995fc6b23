//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code, and the offline Swagger UI that renders it.

use actix_web::{HttpResponse, http::header, web};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{error, health, meetings, metrics, users};

pub const OPENAPI_PATH: &str = "/api/openapi.json";
pub const DOCS_PATH: &str = "/api/docs/";

#[derive(OpenApi)]
#[openapi(
    info(title = "Huddle API", description = "Video-meeting backend: users, meetings, chat, recordings."),
    paths(
        users::create_user,
        users::get_user_by_email,
        users::get_user,
        users::update_user,
        meetings::create_meeting,
        meetings::live_meetings,
        meetings::scheduled_meetings,
        meetings::join_meeting,
        meetings::get_meeting,
        meetings::update_meeting,
        meetings::delete_meeting,
        meetings::start_meeting,
        meetings::end_meeting,
        meetings::leave_meeting,
        meetings::list_participants,
        meetings::count_participants,
        meetings::user_meetings,
        meetings::user_participations,
        meetings::user_stats,
        health::healthz,
        health::readyz,
        metrics::render,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "User profiles"),
        (name = "meetings", description = "Meetings, invite codes, participants and host stats"),
        (name = "ops", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Swagger UI under `/api/docs/` (assets compiled into the binary) and the
/// document at `/api/openapi.json`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        SwaggerUi::new(format!("{DOCS_PATH}{{_:.*}}")).url(OPENAPI_PATH, ApiDoc::openapi()),
    )
    .service(web::resource("/api/docs").route(web::get().to(docs_redirect)));
}

/// `/api/docs` → `/api/docs/`: the UI loads its assets relative to the slash.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, DOCS_PATH))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling {r}"
            );
        }
    }

    #[test]
    fn user_routes_require_the_bearer_scheme() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let get = &doc["paths"]["/api/users/{id}"]["get"];
        assert_eq!(get["security"][0]["bearer"], Value::Array(vec![]));
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
