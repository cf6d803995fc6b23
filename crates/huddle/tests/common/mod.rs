//! The harness lives in `huddle-testapp`, shared with the benches.
#![allow(unused_imports)]

pub use huddle_testapp::*;

/// A service's overall gRPC health (`""` entry); `None` while it cannot be
/// asked.
#[allow(dead_code)]
pub async fn grpc_health(
    addr: std::net::SocketAddr,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    tonic_health::pb::health_check_response::ServingStatus::try_from(reply.into_inner().status).ok()
}
