//! Routing, auth, envelopes, validation and readiness of the gateway alone.

use super::*;

#[actix_web::test]
async fn unknown_route_is_a_404_envelope() {
    let app = app_against!(dead_addr());
    let (status, body) = send!(&app, TestRequest::get().uri("/nope"));
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// A wrong method on a known route is a 405 in the envelope, with `Allow`
/// naming what the route serves. Seen to fail before the fix: 404 NOT_FOUND
/// and no `Allow` header.
#[actix_web::test]
async fn wrong_method_is_405_with_allow() {
    let app = app_against!(dead_addr());
    let res = test::call_service(&app, TestRequest::delete().uri("/api/users").to_request()).await;
    assert_eq!(res.headers().get(header::ALLOW).unwrap(), "POST");
    let status = res.status();
    let body = body_json(res).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    let uri = format!("/api/meetings/{}", Uuid::new_v4());
    let req = TestRequest::default()
        .method(actix_web::http::Method::from_bytes(b"FOO1").unwrap())
        .uri(&uri);
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        res.headers().get(header::ALLOW).unwrap(),
        "GET, PATCH, DELETE"
    );
    // An unknown path stays a 404 whatever the method.
    let req = TestRequest::default()
        .method(actix_web::http::Method::from_bytes(b"FOO1").unwrap())
        .uri("/nope");
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// The router and the OpenAPI document agree on every route's methods: each
/// declared method reaches a handler, each other one is a 405 whose `Allow`
/// lists exactly the declared ones. Seen to fail before the fix: every
/// undeclared method answered 404.
#[actix_web::test]
async fn every_documented_route_answers_405_to_undeclared_methods() {
    let app = app_against!(dead_addr());
    let allowed = crate::allow::AllowedMethods::from_openapi();
    let all = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ];
    let mut checked = 0;
    for (pattern, allow) in allowed.patterns() {
        let uri = pattern.replace("{id}", &Uuid::new_v4().to_string());
        for method in all {
            let req = TestRequest::default()
                .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri);
            let res = test::call_service(&app, req.to_request()).await;
            let declared = allow.split(", ").any(|m| m == method);
            if declared {
                assert_ne!(
                    res.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri}"
                );
                assert_ne!(res.status(), StatusCode::NOT_FOUND, "{method} {uri}");
            } else {
                assert_eq!(
                    res.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri}"
                );
                assert_eq!(res.headers().get(header::ALLOW).unwrap(), allow, "{uri}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

/// Invented methods share one `OTHER` label, on known and unknown routes.
/// Seen to fail before the fix: `method="FOO1"`, `"FOO2"`… each made new
/// series.
#[actix_web::test]
async fn invented_methods_do_not_create_metric_labels() {
    let app = app_against!(dead_addr());
    for (i, uri) in ["/api/users", "/nope", "/healthz"].iter().enumerate() {
        let method = format!("FOO{i}");
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        test::call_service(&app, req.to_request()).await;
    }
    let res = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(!text.contains("FOO"), "{text}");
    assert!(
        text.contains(
            r#"huddle_http_requests_total{method="OTHER",route="/api/users",status="405"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"huddle_http_requests_total{method="OTHER",route="unmatched",status="404"} 1"#
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn healthz_is_always_ok() {
    let app = app_against!(dead_addr());
    let (status, body) = send!(&app, TestRequest::get().uri("/healthz"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": true, "data": {"status": "ok"}}));
}

#[actix_web::test]
async fn missing_token_is_401_and_says_so() {
    let app = app_against!(dead_addr());
    let uri = format!("/api/users/{}", Uuid::new_v4());
    let (status, body) = send!(&app, TestRequest::get().uri(&uri));
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert!(body["message"].as_str().unwrap().contains("missing"));
}

#[actix_web::test]
async fn expired_and_forged_tokens_are_401() {
    let app = app_against!(dead_addr());
    let uri = format!("/api/users/{}", Uuid::new_v4());
    let forged = mint_token(
        "other",
        &Uuid::new_v4().to_string(),
        false,
        Duration::from_secs(60),
    )
    .unwrap();
    let req = TestRequest::get()
        .uri(&uri)
        .insert_header((header::AUTHORIZATION, format!("Bearer {forged}")));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert!(body["message"].as_str().unwrap().contains("invalid"));

    // An `exp` long past, well beyond the leeway.
    let claims = json!({"sub": Uuid::new_v4().to_string(), "exp": 1_000_000_000u64});
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let req = TestRequest::get()
        .uri(&uri)
        .insert_header((header::AUTHORIZATION, format!("Bearer {old}")));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert!(body["message"].as_str().unwrap().contains("expired"));
}

#[actix_web::test]
async fn admin_routes_refuse_user_tokens() {
    let app = app_against!(dead_addr());
    let token = user_token(Uuid::new_v4());
    let req = TestRequest::post()
        .uri("/api/users")
        .insert_header((header::AUTHORIZATION, token.clone()))
        // Invalid on purpose: authorisation is decided before the body is read.
        .set_json(json!({"bogus": true}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    let req = TestRequest::get()
        .uri("/api/users/by-email?email=a@b.c")
        .insert_header((header::AUTHORIZATION, token));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn oversized_body_is_413_json() {
    let app = app_against!(dead_addr());
    let big = "a".repeat(MAX_BODY_BYTES + 1);
    let req = TestRequest::post()
        .uri("/api/users")
        .insert_header((header::AUTHORIZATION, admin_token()))
        .set_json(json!({"name": big, "email": "a@b.c"}));
    let (status, body) = send!(&app, req);
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
}

#[actix_web::test]
async fn unknown_field_is_400_naming_the_field() {
    let app = app_against!(dead_addr());
    let req = TestRequest::post()
        .uri("/api/users")
        .insert_header((header::AUTHORIZATION, admin_token()))
        .set_json(json!({"name": "Ada", "email": "a@b.c", "isAdmin": true}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        body["message"].as_str().unwrap().contains("isAdmin"),
        "{body}"
    );
}

#[actix_web::test]
async fn malformed_bodies_are_400_never_500() {
    let app = app_against!(dead_addr());
    let cases = [
        ("application/json", "{not json"),
        ("application/json", ""),
        ("application/json", r#"{"name": 5, "email": "a@b.c"}"#),
        ("text/plain", r#"{"name": "Ada", "email": "a@b.c"}"#),
    ];
    for (content_type, payload) in cases {
        let req = TestRequest::post()
            .uri("/api/users")
            .insert_header((header::AUTHORIZATION, admin_token()))
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(payload);
        let (status, body) = send!(&app, req);
        assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
}

#[actix_web::test]
async fn field_validation_runs_before_any_grpc_call() {
    // The user service is down: a 400 proves validation answered first.
    let app = app_against!(dead_addr());
    let req = TestRequest::post()
        .uri("/api/users")
        .insert_header((header::AUTHORIZATION, admin_token()))
        .set_json(json!({"name": "a".repeat(101), "email": "a@b.c"}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(body["message"], "name: must be 1 to 100 characters");

    let req = TestRequest::get()
        .uri("/api/users/not-a-uuid")
        .insert_header((header::AUTHORIZATION, user_token(Uuid::new_v4())));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(body["message"], "id: not a valid uuid");

    let req = TestRequest::get()
        .uri("/api/users/by-email?email=nope")
        .insert_header((header::AUTHORIZATION, admin_token()));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(body["message"].as_str().unwrap().starts_with("email:"));

    let req = TestRequest::get()
        .uri("/api/users/by-email")
        .insert_header((header::AUTHORIZATION, admin_token()));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(body["message"].as_str().unwrap().contains("email"));
}

#[actix_web::test]
async fn patch_is_for_the_user_themself_only() {
    let app = app_against!(dead_addr());
    let me = Uuid::new_v4();
    let other = Uuid::new_v4();
    let req = TestRequest::patch()
        .uri(&format!("/api/users/{other}"))
        .insert_header((header::AUTHORIZATION, user_token(me)))
        .set_json(json!({"name": "Eve"}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    let req = TestRequest::patch()
        .uri(&format!("/api/users/{me}"))
        .insert_header((header::AUTHORIZATION, admin_token()))
        .set_json(json!({"name": "Eve"}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    let req = TestRequest::patch()
        .uri(&format!("/api/users/{me}"))
        .insert_header((header::AUTHORIZATION, user_token(me)))
        .set_json(json!({}));
    let (status, body) = send!(&app, req);
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(body["message"], "nothing to update");
}

#[actix_web::test]
async fn a_down_user_service_is_503_without_details() {
    let app = app_against!(dead_addr());
    let me = Uuid::new_v4();
    let req = TestRequest::get()
        .uri(&format!("/api/users/{me}"))
        .insert_header((header::AUTHORIZATION, user_token(me)));
    let (status, body) = send!(&app, req);
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    );
    assert!(!body["message"].as_str().unwrap().contains("127.0.0.1"));
}

/// Readiness is the gateway's own: with the meeting service down and the user
/// service up, the gateway stays ready, user routes work, meeting routes
/// answer 503 and `/readyz` shows each backend. Seen to fail before the fix:
/// `/readyz` answered 503 `not serving: huddle.meeting.v1.MeetingService`.
#[actix_web::test]
async fn one_backend_down_leaves_the_gateway_ready_and_its_routes_503() {
    let (addr, fake) = start_fake().await;
    let mut config = config(addr);
    config.meeting_addr = dead_addr();
    let state = AppState::new(&config, Registry::new()).unwrap();
    let app = test::init_service(app(state)).await;

    let (status, body) = send!(&app, TestRequest::get().uri("/readyz"));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "degraded", "{body}");
    assert_eq!(body["data"]["services"][USER_SERVICE], "SERVING", "{body}");
    assert_eq!(
        body["data"]["services"][MEETING_SERVICE], "UNREACHABLE",
        "{body}"
    );

    let me = Uuid::new_v4();
    *fake.user.lock().unwrap() = Some(User {
        id: me.to_string(),
        name: "Ada".to_owned(),
        email: "ada@example.com".to_owned(),
        image: None,
        created_at: timestamp(),
        updated_at: timestamp(),
    });
    let req = TestRequest::get()
        .uri(&format!("/api/users/{me}"))
        .insert_header((header::AUTHORIZATION, user_token(me)));
    let (status, body) = send!(&app, req);
    assert_eq!(status, StatusCode::OK, "{body}");

    let req = TestRequest::get()
        .uri("/api/meetings/live")
        .insert_header((header::AUTHORIZATION, user_token(me)));
    let (status, body) = send!(&app, req);
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    );
}

#[actix_web::test]
async fn request_ids_are_echoed_or_generated() {
    let app = app_against!(dead_addr());
    let req = TestRequest::get()
        .uri("/healthz")
        .insert_header((REQUEST_ID_HEADER, "trace-me.1"));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.headers().get(REQUEST_ID_HEADER).unwrap(), "trace-me.1");

    let req = TestRequest::get()
        .uri("/nope")
        .insert_header((REQUEST_ID_HEADER, "not ok!"));
    let res = test::call_service(&app, req.to_request()).await;
    let id = res
        .headers()
        .get(REQUEST_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(Uuid::parse_str(id).is_ok(), "{id}");
}

#[actix_web::test]
async fn openapi_document_lists_the_user_routes() {
    let app = app_against!(dead_addr());
    let (status, doc) = send!(&app, TestRequest::get().uri("/api/openapi.json"));
    assert_eq!(status, StatusCode::OK);
    for path in ["/api/users", "/api/users/{id}", "/api/users/by-email"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/api/users/{id}"]["patch"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[actix_web::test]
async fn swagger_ui_is_served_offline() {
    let app = app_against!(dead_addr());
    let res = test::call_service(&app, TestRequest::get().uri("/api/docs/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    let res = test::call_service(&app, TestRequest::get().uri("/api/docs").to_request()).await;
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);

    let (status, body) = send!(&app, TestRequest::get().uri("/api/docs/nope.js"));
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[actix_web::test]
async fn metrics_render_the_shared_registry_by_route_pattern() {
    let registry = Registry::new();
    let other = prometheus::IntCounter::new("huddle_cache_hits_total", "from a service").unwrap();
    registry.register(Box::new(other.clone())).unwrap();
    other.inc();
    let state = AppState::new(&config(dead_addr()), registry).unwrap();
    let app = test::init_service(app(state)).await;

    let uri = format!("/api/users/{}", Uuid::new_v4());
    test::call_service(&app, TestRequest::get().uri(&uri).to_request()).await;
    let res = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/plain; version=0.0.4"
    );
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(text.contains("huddle_cache_hits_total 1"), "{text}");
    assert!(
        text.contains(
            r#"huddle_http_requests_total{method="GET",route="/api/users/{id}",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains(&uri));
}

#[tokio::test]
async fn a_second_gateway_on_one_registry_is_refused() {
    let registry = Registry::new();
    assert!(AppState::new(&config(dead_addr()), registry.clone()).is_ok());
    assert!(matches!(
        AppState::new(&config(dead_addr()), registry),
        Err(GatewayError::Metrics(_))
    ));
}

#[tokio::test]
async fn bad_config_is_reported() {
    let mut bad = config("http://exa mple:1".to_owned());
    assert!(matches!(
        AppState::new(&bad, Registry::new()),
        Err(GatewayError::BadAddr { .. })
    ));
    bad.user_addr = dead_addr();
    bad.jwt_secret.clear();
    assert!(matches!(
        AppState::new(&bad, Registry::new()),
        Err(GatewayError::EmptySecret)
    ));
}

/// Swagger UI can be turned off (production) while the document, the
/// contract, is still served. Seen to fail with the flag ignored: the UI
/// answered 200.
#[actix_web::test]
async fn swagger_ui_can_be_off_while_the_document_stays() {
    let mut config = config(dead_addr());
    config.swagger_ui = false;
    let app = test::init_service(app(AppState::new(&config, Registry::new()).unwrap())).await;
    let (status, _) = send!(&app, TestRequest::get().uri("/api/docs/"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, doc) = send!(&app, TestRequest::get().uri("/api/openapi.json"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "Huddle API");
}
