//! Liveness and readiness. Liveness says only that the process answers.
//! Readiness means the gateway can serve: it does not depend on the services
//! behind it, because one backend's outage (say user-service's database)
//! would otherwise take every gateway pod out of the Service, the routes of
//! the healthy backends included. A route whose backend is down answers 503
//! on its own; `/readyz` still reports each backend's gRPC health, for
//! operators.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures::future::join_all;
use huddle_common::grpc_client::GrpcChannel;
use serde::Serialize;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use utoipa::ToSchema;

use crate::success;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One gRPC service the gateway depends on, by its health-check name.
#[derive(Clone)]
pub struct Dependency {
    pub service: &'static str,
    pub client: HealthClient<GrpcChannel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every backend is serving, `degraded` when some is not
    /// (the gateway serves either way; that backend's routes answer 503).
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Health per gRPC service name: `SERVING`, `NOT_SERVING`,
    /// `SERVICE_UNKNOWN`, `UNREACHABLE` or `TIMEOUT`.
    pub services: BTreeMap<&'static str, String>,
    /// Whether Redis may evict keys (`safe: …`, `UNSAFE: …`, `unknown: …`):
    /// correctness needs `noeviction` or no `maxmemory`. Absent when the
    /// gateway has no Redis (no rate limiter configured).
    #[serde(rename = "redisEviction", skip_serializing_if = "Option::is_none")]
    pub redis_eviction: Option<String>,
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
        (status = 200, description = "The gateway can serve; each backend's health is in `services`", body = crate::Success<Readiness>),
    )
)]
pub async fn readyz(
    deps: web::Data<Vec<Dependency>>,
    limiter: web::Data<crate::ratelimit::Limiter>,
) -> HttpResponse {
    let (results, redis_eviction) =
        futures::join!(join_all(deps.iter().map(check)), limiter.eviction());
    let all_serving = results.iter().all(|(_, status)| status == "SERVING");
    success(
        actix_web::http::StatusCode::OK,
        Readiness {
            status: if all_serving { "ready" } else { "degraded" },
            services: results.into_iter().collect(),
            redis_eviction,
        },
    )
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
