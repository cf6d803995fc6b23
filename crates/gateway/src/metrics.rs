//! HTTP metrics, registered into the process's shared registry, and the
//! `/metrics` endpoint that renders that whole registry (the services' cache
//! metrics included when they run in the same process).

use std::time::Instant;

use actix_web::{
    HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::error::ApiError;

/// Label for requests that matched no route: raw paths would let any client
/// create unbounded label values.
const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "huddle_http_requests_total",
                "HTTP requests handled by the gateway",
            ),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "huddle_http_request_duration_seconds",
                "Gateway HTTP request latency",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, status.to_string().as_str()])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// Middleware (for `middleware::from_fn`): counts and times every request by route pattern
/// (`/api/users/{id}`, never the raw path).
pub async fn middleware<B: MessageBody>(
    metrics: HttpMetrics,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let method = crate::allow::method_label(req.method());
    let res = next.call(req).await?;
    let route = crate::route::pattern_of(res.request()).unwrap_or(UNMATCHED_ROUTE.into());
    metrics.observe(
        method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    Ok(res)
}

/// `GET /metrics`: the whole shared registry in Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String))
)]
pub async fn render(registry: web::Data<Registry>) -> Result<HttpResponse, ApiError> {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    encoder.encode(&registry.gather(), &mut buf).map_err(|e| {
        tracing::error!(error = %e, "cannot encode metrics");
        ApiError::internal()
    })?;
    Ok(HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_in_one_registry_fails_instead_of_double_counting() {
        let registry = Registry::new();
        assert!(HttpMetrics::register(&registry).is_ok());
        assert!(HttpMetrics::register(&registry).is_err());
    }

    #[test]
    fn observations_show_up_under_the_route_pattern() {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).unwrap();
        metrics.observe("GET", "/api/users/{id}", 200, 0.01);
        let text = TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(
            r#"huddle_http_requests_total{method="GET",route="/api/users/{id}",status="200"} 1"#
        ));
    }
}
