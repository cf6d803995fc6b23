//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code, and the offline Swagger UI that renders it.

use actix_web::{HttpResponse, http::header, web};
use serde_json::{Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::route::resource;
use crate::{chats, error, health, meetings, metrics, recordings, users};

pub const OPENAPI_PATH: &str = "/api/openapi.json";
pub const DOCS_PATH: &str = "/api/docs/";

#[derive(OpenApi)]
#[openapi(
    info(title = "Huddle API", description = "Video-meeting backend: users, meetings, chat, recordings.\n\nEvery error is `{success: false, code, message}`. A method a path does not declare answers 405 `METHOD_NOT_ALLOWED` with an `Allow` header; an unknown path answers 404. Meeting create and join, and chat posts (per meeting), are rate limited per user (429 `TOO_MANY_REQUESTS` with `Retry-After` in seconds)."),
    paths(
        users::create_user,
        users::get_user_by_email,
        users::get_user,
        users::update_user,
        meetings::create_meeting,
        meetings::live_meetings,
        meetings::scheduled_meetings,
        meetings::join_meeting,
        meetings::media_token,
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
        recordings::livekit_webhook,
        recordings::get_recording,
        recordings::list_recordings,
        crate::recording_control::start_recording,
        crate::recording_control::stop_recording,
        chats::recent_chats,
        chats::post_chat,
        chats::chat_history,
        chats::stream_chats,
        health::healthz,
        health::readyz,
        metrics::render,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "User profiles"),
        (name = "meetings", description = "Meetings, invite codes, participants and host stats"),
        (name = "recordings", description = "Meeting recordings and the LiveKit egress webhook"),
        (name = "chat", description = "Meeting chat: the recent window, posting, history pages and the live stream (Server-Sent Events)"),
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

// The field patterns are the shared rules' own (`huddle-domain`), so the
// document and the server cannot disagree.
use huddle_domain::{
    text::{MULTILINE_PATTERN, MULTILINE_TEXT_PATTERN, TEXT_PATTERN},
    user::IMAGE_URL_PATTERN as IMAGE_PATTERN,
};
/// The alphabet and length of invite codes (`invite.rs` in meeting-service).
const INVITE_CODE_PATTERN: &str = "^[A-Za-z0-9_-]{12}$";

/// The rules the field parsers enforce that the derived schemas cannot say
/// (patterns, formats, enums, "required when", "at least one field"), written
/// onto the generated document as JSON (utoipa's types have no `oneOf`
/// beside `properties`) so it is exact: schemathesis (`make test`,
/// scripts/fuzz.sh) fails on any request the document and the gateway judge
/// differently. "Not in the past" depends on the clock and is stated in the
/// descriptions only.
/// The served document: the derived one plus [`exact_rules`].
pub fn document() -> Value {
    match serde_json::to_value(ApiDoc::openapi()) {
        Ok(mut doc) => {
            exact_rules(&mut doc);
            doc
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            Value::Null
        }
    }
}

fn exact_rules(doc: &mut Value) {
    user_rules(&mut doc["components"]["schemas"]);
    meeting_rules(&mut doc["components"]["schemas"]);
    merge(
        &mut doc["components"]["schemas"]["PostChatBody"]["properties"]["message"],
        &json!({"pattern": MULTILINE_TEXT_PATTERN}),
    );
    path_rules(doc);
}

fn user_rules(schemas: &mut Value) {
    let text = json!({"pattern": TEXT_PATTERN});
    let image = json!({"format": "uri", "pattern": IMAGE_PATTERN});
    let email = json!({"format": "email"});
    merge(&mut schemas["CreateUserBody"]["properties"]["name"], &text);
    merge(
        &mut schemas["CreateUserBody"]["properties"]["email"],
        &email,
    );
    merge(
        &mut schemas["CreateUserBody"]["properties"]["image"],
        &image,
    );
    merge(&mut schemas["UpdateUserBody"]["properties"]["name"], &text);
    merge(
        &mut schemas["UpdateUserBody"]["properties"]["image"],
        &image,
    );
    merge(&mut schemas["UpdateUserBody"], &json!({"minProperties": 1}));
}

fn meeting_rules(schemas: &mut Value) {
    let text = json!({"pattern": TEXT_PATTERN});
    merge(
        &mut schemas["JoinMeetingBody"]["properties"]["inviteCode"],
        &json!({"pattern": INVITE_CODE_PATTERN}),
    );

    let multiline = json!({"pattern": MULTILINE_PATTERN});
    let create = &mut schemas["CreateMeetingBody"];
    merge(&mut create["properties"]["title"], &text);
    merge(&mut create["properties"]["description"], &multiline);
    merge(
        &mut create["properties"]["status"],
        &json!({"enum": ["SCHEDULED", "LIVE"]}),
    );
    merge(
        &mut create["properties"]["scheduledAt"],
        &json!({
            "type": ["string", "null"],
            "description": "RFC 3339; not more than 60 s in the past. Required (not null) unless `status` is `LIVE` (an instant meeting, started now)."
        }),
    );
    merge(
        create,
        &json!({"oneOf": [
            {
                "title": "scheduled",
                "required": ["scheduledAt"],
                "properties": {
                    "status": {"const": "SCHEDULED"},
                    "scheduledAt": {"type": "string"}
                }
            },
            {
                "title": "live",
                "required": ["status"],
                "properties": {"status": {"const": "LIVE"}}
            }
        ]}),
    );

    let update = &mut schemas["UpdateMeetingBody"];
    merge(&mut update["properties"]["title"], &text);
    merge(&mut update["properties"]["description"], &multiline);
    merge(
        &mut update["properties"]["status"],
        &json!({"enum": ["SCHEDULED", "LIVE", "ENDED"]}),
    );
    merge(
        &mut update["properties"]["scheduledAt"],
        &json!({"description": "RFC 3339; not more than 60 s in the past; only while SCHEDULED."}),
    );
    // `{}` and `{"rotateInviteCode": false}` change nothing: a 400.
    merge(
        update,
        &json!({"anyOf": [
            {"required": ["title"]},
            {"required": ["description"]},
            {"required": ["scheduledAt"]},
            {"required": ["status"]},
            {"required": ["rotateInviteCode"], "properties": {"rotateInviteCode": {"const": true}}}
        ]}),
    );
}

fn path_rules(doc: &mut Value) {
    if let Some(params) = doc["paths"]["/api/users/by-email"]["get"]["parameters"].as_array_mut() {
        for param in params.iter_mut().filter(|p| p["name"] == "email") {
            merge(
                &mut param["schema"],
                &json!({"format": "email", "maxLength": 254}),
            );
        }
    }

    // An egress id is single-line text of 1 to 200 characters (recording-service's rule).
    if let Some(params) =
        doc["paths"]["/api/meetings/{id}/recordings/{egressId}/stop"]["post"]["parameters"]
            .as_array_mut()
    {
        for param in params.iter_mut().filter(|p| p["name"] == "egressId") {
            param["schema"] = json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN});
        }
    }

    // An optional header is absent or a uuid, never `null`.
    if let Some(params) =
        doc["paths"]["/api/meetings/{id}/chats/stream"]["get"]["parameters"].as_array_mut()
    {
        for param in params.iter_mut().filter(|p| p["name"] == "Last-Event-ID") {
            param["schema"] = json!({"type": "string", "format": "uuid"});
        }
    }

    let too_many = json!({
        "description": "Over the caller's rate limit",
        "headers": {"Retry-After": {"description": "Seconds until the limit resets", "schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    });
    for path in [
        "/api/meetings",
        "/api/meetings/join",
        "/api/meetings/{id}/media-token",
        "/api/meetings/{id}/chats",
    ] {
        doc["paths"][path]["post"]["responses"]["429"] = too_many.clone();
    }
    idempotency_rules(doc);
}

/// Every creating `POST` takes `Idempotency-Key` (SPEC §3).
fn idempotency_rules(doc: &mut Value) {
    let header = json!({
        "name": huddle_domain::idempotency::FIELD,
        "in": "header",
        "required": false,
        "description": "1 to 255 visible ASCII characters, chosen by the client per logical request. A retry with the same key and body by the same caller within 24 h gets the first successful answer (same status and body) and writes nothing; the same key with another body is 409 `IDEMPOTENCY_KEY_REUSED`. A failed request keeps no key: its retry runs anew.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]{1,255}$"}
    });
    let reused = "`IDEMPOTENCY_KEY_REUSED`: the `Idempotency-Key` was used with another body";
    for path in [
        "/api/users",
        "/api/meetings",
        "/api/meetings/join",
        "/api/meetings/{id}/chats",
        "/api/meetings/{id}/recordings",
    ] {
        let post = &mut doc["paths"][path]["post"];
        match post["parameters"].as_array_mut() {
            Some(params) => params.push(header.clone()),
            None => post["parameters"] = json!([header.clone()]),
        }
        let conflict = &mut post["responses"]["409"];
        let description = match conflict["description"].as_str() {
            Some(before) => format!("`CONFLICT`: {before}. {reused}"),
            None => reused.to_owned(),
        };
        *conflict = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        });
    }
}

/// Copies `extra`'s keys onto `target` (an object; anything else is left
/// alone, which the document's tests would notice).
fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// The document at `/api/openapi.json`, and with `swagger_ui` the Swagger
/// UI under `/api/docs/` (assets compiled into the binary).
pub fn routes(cfg: &mut web::ServiceConfig, swagger_ui: bool) {
    if !swagger_ui {
        let doc = document();
        cfg.service(resource(OPENAPI_PATH).route(web::get().to(move || {
            let doc = doc.clone();
            async move { HttpResponse::Ok().json(doc) }
        })));
        return;
    }
    cfg.service(
        SwaggerUi::new(format!("{DOCS_PATH}{{_:.*}}"))
            .external_urls_from_iter_unchecked([(OPENAPI_PATH, document())]),
    )
    .service(resource("/api/docs").route(web::get().to(docs_redirect)));
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

    /// The image pattern the document states and the hand-written check the
    /// server runs give the same verdict, on ordinary URLs and on the ones
    /// schemathesis found disagreeing (`https://0.com*` was accepted by a
    /// URL parser while the pattern refused it).
    #[test]
    fn the_image_pattern_and_the_server_rule_agree() {
        let pattern = regex::Regex::new(IMAGE_PATTERN).unwrap();
        for url in [
            "https://cdn.example.com/a.png",
            "http://example.com",
            "https://example.com:8443/a%20b/c.png",
            "https://0.com*",
            "https://0.com",
            "https://1.2.3.4/a.png",
            " https://x.io/a.png",
            "https://x.io/a.png?size=2",
            "https://x.io/a#b",
            "https://user@x.io/",
            "https://x.io/%zz",
            "https://x.io:123456/",
            "https://-x.io/",
            "https://x..io/",
            "ftp://x.io/",
            "https://",
        ] {
            assert_eq!(
                pattern.is_match(url),
                huddle_domain::user::is_web_url(url),
                "{url:?}"
            );
        }
    }

    /// The document's invite-code pattern is the shared rule's, so a change
    /// to the code format cannot leave the contract behind.
    #[test]
    fn the_invite_code_pattern_is_the_shared_rule() {
        use huddle_domain::invite_code::{ALPHABET, LEN};
        assert_eq!(INVITE_CODE_PATTERN, format!("^[A-Za-z0-9_-]{{{LEN}}}$"));
        let mut class: Vec<u8> = (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .chain([b'_', b'-'])
            .collect();
        let mut alphabet = ALPHABET.to_vec();
        class.sort_unstable();
        alphabet.sort_unstable();
        assert_eq!(class, alphabet);
    }

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

    /// The rules the derive cannot express are on the served document.
    /// Seen to fail before `ExactRules`: no `pattern` on `inviteCode`, no
    /// `format` on `image`, no `oneOf` on the create body (schemathesis
    /// reported each as a schema-valid request rejected).
    #[test]
    fn the_document_states_the_exact_rules() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        assert_eq!(
            s["JoinMeetingBody"]["properties"]["inviteCode"]["pattern"],
            INVITE_CODE_PATTERN
        );
        assert_eq!(s["CreateUserBody"]["properties"]["image"]["format"], "uri");
        assert_eq!(
            s["UpdateUserBody"]["properties"]["image"]["pattern"],
            IMAGE_PATTERN
        );
        assert_eq!(
            s["CreateUserBody"]["properties"]["email"]["format"],
            "email"
        );
        assert_eq!(s["CreateMeetingBody"]["oneOf"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["CreateMeetingBody"]["properties"]["status"]["enum"],
            json!(["SCHEDULED", "LIVE"])
        );
        assert!(
            s["CreateMeetingBody"]["properties"]["scheduledAt"]["description"]
                .as_str()
                .unwrap()
                .contains("past")
        );
        assert!(s["UpdateMeetingBody"]["anyOf"].is_array());
        assert_eq!(s["UpdateUserBody"]["minProperties"], 1);
        assert_eq!(
            doc["paths"]["/api/users/by-email"]["get"]["parameters"][0]["schema"]["format"],
            "email"
        );
        assert!(doc["paths"]["/api/meetings/join"]["post"]["responses"]["429"]["headers"]["Retry-After"].is_object());
        assert!(doc["info"]["description"].as_str().unwrap().contains("405"));
    }

    #[test]
    fn user_routes_require_the_bearer_scheme() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let get = &doc["paths"]["/api/users/{id}"]["get"];
        assert_eq!(get["security"][0]["bearer"], Value::Array(vec![]));
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
