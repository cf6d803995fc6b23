//! A reflection client that has no proto files can discover each service.

// Test helpers outside #[test] fns may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::TestApp;
use huddle_proto::{meeting::v1::meeting_service_server, user::v1::user_service_server};
/// The service names a server lists over one reflection protocol version:
/// `v1` (grpcurl, tonic) or `v1alpha` (the Python `grpcio-reflection`
/// client, Postman, Evans, older grpcurl). The two versions' types differ
/// only in their module, so one body serves both.
macro_rules! listed_services {
    ($version:ident, $addr:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", $addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response: {response:?}");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

async fn listed_services(addr: SocketAddr) -> Vec<String> {
    listed_services!(v1, addr)
}

/// Seen to fail with UNIMPLEMENTED when only `build_v1` was served.
async fn listed_services_v1alpha(addr: SocketAddr) -> Vec<String> {
    listed_services!(v1alpha, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_user_service() {
    let app = TestApp::spawn().await;
    let names = listed_services(app.user_addr).await;
    for expected in [user_service_server::SERVICE_NAME, "grpc.health.v1.Health"] {
        assert!(names.contains(&expected.to_owned()), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_meeting_service() {
    let app = TestApp::spawn().await;
    let names = listed_services(app.meeting_addr).await;
    for expected in [
        meeting_service_server::SERVICE_NAME,
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected.to_owned()), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_recording_service() {
    let app = TestApp::spawn().await;
    for names in [
        listed_services(app.recording_addr).await,
        listed_services_v1alpha(app.recording_addr).await,
    ] {
        for expected in [
            "huddle.recording.v1.RecordingService",
            "grpc.health.v1.Health",
        ] {
            assert!(names.contains(&expected.to_owned()), "{names:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1alpha_reflection_lists_both_services() {
    let app = TestApp::spawn().await;
    let user = listed_services_v1alpha(app.user_addr).await;
    let meeting = listed_services_v1alpha(app.meeting_addr).await;
    assert!(
        user.contains(&"huddle.user.v1.UserService".to_owned()),
        "{user:?}"
    );
    assert!(
        meeting.contains(&"huddle.meeting.v1.MeetingService".to_owned()),
        "{meeting:?}"
    );
    assert!(user.contains(&"grpc.health.v1.Health".to_owned()));
}
