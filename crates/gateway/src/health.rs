//! Liveness and readiness. Liveness says only that the process answers;
//! readiness asks every service the gateway routes to through the standard
//! gRPC health check, so a load balancer stops sending traffic that could only
//! fail with 503.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures::future::join_all;
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::success;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One gRPC service the gateway depends on, by its health-check name.
#[derive(Clone)]
pub struct Dependency {
    pub service: &'static str,
    pub client: HealthClient<Channel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Serving status per gRPC service name.
    pub services: BTreeMap<&'static str, String>,
}

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "The process is alive", body = crate::Success<Liveness>))
)]
pub async fn healthz() -> HttpResponse {
    success(actix_web::http::StatusCode::OK, Liveness { status: "ok" })
}

/// `GET /readyz`
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Every backing service is serving", body = crate::Success<Readiness>),
        (status = 503, description = "A backing service is not serving", body = ErrorBody)
    )
)]
pub async fn readyz(deps: web::Data<Vec<Dependency>>) -> Result<HttpResponse, ApiError> {
    let results = join_all(deps.iter().map(check)).await;
    let not_serving: Vec<String> = results
        .iter()
        .filter(|(_, status)| status != "SERVING")
        .map(|(service, status)| format!("{service} ({status})"))
        .collect();
    if !not_serving.is_empty() {
        return Err(ApiError::unavailable(format!(
            "not serving: {}",
            not_serving.join(", ")
        )));
    }
    let services = results.into_iter().collect();
    Ok(success(
        actix_web::http::StatusCode::OK,
        Readiness {
            status: "ready",
            services,
        },
    ))
}

/// The service's status as the health protocol names it, or why it could
/// not be asked (`UNREACHABLE`, `TIMEOUT`).
async fn check(dep: &Dependency) -> (&'static str, String) {
    let mut client = dep.client.clone();
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: dep.service.to_owned(),
    });
    request.set_timeout(CHECK_TIMEOUT);
    let status = match tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await {
        Ok(Ok(response)) => response.into_inner().status().as_str_name().to_owned(),
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => "SERVICE_UNKNOWN".to_owned(),
        Ok(Err(status)) => {
            tracing::debug!(service = dep.service, error = %status, "health check failed");
            "UNREACHABLE".to_owned()
        }
        Err(_) => "TIMEOUT".to_owned(),
    };
    (dep.service, status)
}
