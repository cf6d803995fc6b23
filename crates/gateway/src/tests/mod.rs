//! The real app factory driven in-process: error envelopes, auth, docs, and the
//! gRPC path against an in-process fake user service (no external services).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{
    body::MessageBody,
    dev::ServiceResponse,
    http::{StatusCode, header},
    test::{self, TestRequest},
};
use huddle_common::REQUEST_ID_HEADER;
use huddle_proto::user::v1::{
    BatchGetUsersRequest, BatchGetUsersResponse, CreateUserRequest, GetUserByEmailRequest,
    GetUserRequest, UpdateUserRequest, User,
    user_service_server::{UserService, UserServiceServer},
};
use prometheus::Registry;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use uuid::Uuid;

use super::*;
use crate::auth::mint_token;

const SECRET: &str = "gateway-test-secret";

fn config(user_addr: String) -> GatewayConfig {
    GatewayConfig {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        // The fake user service also answers the meeting and recording
        // services' health checks, so one fake makes the gateway ready.
        meeting_addr: user_addr.clone(),
        recording_addr: user_addr.clone(),
        chat_addr: user_addr.clone(),
        streams: crate::chats::StreamLimits::default(),
        user_addr,
        jwt_secret: SECRET.to_owned(),
        request_timeout: Duration::from_secs(2),
        workers: 1,
        rate_limit: ratelimit::RateLimitConfig::default(),
        swagger_ui: true,
        coalesce_reads: true,
    }
}

/// An address where nothing listens: connections are refused at once. The
/// port stays bound (never listening) for the rest of the test process, so
/// no other test can take it and answer.
fn dead_addr() -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    std::mem::forget(socket);
    addr
}

fn user_token(id: Uuid) -> String {
    let token = mint_token(SECRET, &id.to_string(), false, Duration::from_secs(60)).unwrap();
    format!("Bearer {token}")
}

fn admin_token() -> String {
    let token = mint_token(SECRET, "ops", true, Duration::from_secs(60)).unwrap();
    format!("Bearer {token}")
}

async fn body_json<B: MessageBody>(res: ServiceResponse<B>) -> Value {
    let bytes = test::read_body(res).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Sends a request and returns the status and the JSON body. A macro because
/// the service's request type (`actix_http::Request`) is not nameable here.
macro_rules! send {
    ($app:expr, $req:expr) => {{
        let res = test::call_service($app, $req.to_request()).await;
        let status = res.status();
        (status, body_json(res).await)
    }};
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

macro_rules! app_against {
    ($addr:expr) => {{
        let state = AppState::new(&config($addr), Registry::new()).unwrap();
        test::init_service(app(state)).await
    }};
}

/// An in-process user service that remembers the request ids it saw.
#[derive(Default)]
struct FakeUsers {
    user: Mutex<Option<User>>,
    request_ids: Mutex<Vec<String>>,
    updates: Mutex<Vec<UpdateUserRequest>>,
}

impl FakeUsers {
    fn record<T>(&self, request: &Request<T>) {
        let id = request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_owned();
        self.request_ids.lock().unwrap().push(id);
    }

    fn stored(&self) -> Result<Response<User>, Status> {
        self.user
            .lock()
            .unwrap()
            .clone()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("user not found"))
    }
}

fn timestamp() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    })
}

#[tonic::async_trait]
impl UserService for FakeUsers {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        self.record(&request);
        let req = request.into_inner();
        if req.email == "taken@example.com" {
            return Err(Status::already_exists("email already in use"));
        }
        let user = User {
            id: Uuid::new_v4().to_string(),
            name: req.name,
            email: req.email,
            image: req.image,
            created_at: timestamp(),
            updated_at: timestamp(),
        };
        *self.user.lock().unwrap() = Some(user.clone());
        Ok(Response::new(user))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        self.record(&request);
        let stored = self.stored()?;
        if stored.get_ref().id != request.get_ref().id {
            return Err(Status::not_found("user not found"));
        }
        Ok(stored)
    }

    async fn get_user_by_email(
        &self,
        request: Request<GetUserByEmailRequest>,
    ) -> Result<Response<User>, Status> {
        self.record(&request);
        let stored = self.stored()?;
        // Answer only for the email asked about, so a gateway that passed
        // the wrong value (or none) would be caught.
        if !stored
            .get_ref()
            .email
            .eq_ignore_ascii_case(&request.get_ref().email)
        {
            return Err(Status::not_found("user not found"));
        }
        Ok(stored)
    }

    async fn batch_get_users(
        &self,
        _: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<User>, Status> {
        self.record(&request);
        let req = request.into_inner();
        self.updates.lock().unwrap().push(req.clone());
        let mut guard = self.user.lock().unwrap();
        let user = guard
            .as_mut()
            .ok_or_else(|| Status::not_found("user not found"))?;
        if let Some(name) = req.name {
            user.name = name;
        }
        if req.clear_image {
            user.image = None;
        } else if req.image.is_some() {
            user.image = req.image;
        }
        Ok(Response::new(user.clone()))
    }
}

async fn start_fake() -> (String, Arc<FakeUsers>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(FakeUsers::default());
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(USER_SERVICE, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(MEETING_SERVICE, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(RECORDING_SERVICE, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(CHAT_SERVICE, ServingStatus::Serving)
        .await;
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(UserServiceServer::from_arc(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr.to_string(), fake)
}

mod http;
mod rate_limits;
mod users;
