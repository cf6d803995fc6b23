//! The request layer every gRPC server carries: one span per call (service,
//! method, the caller's request id) and the server's request metrics. It
//! replaces a span-and-instrument block in every handler.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use huddle_common::REQUEST_ID_HEADER;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

/// gRPC server metrics of one process (every service in it shares them).
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl GrpcMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "huddle_grpc_server_requests_total",
                "gRPC calls served, by service, method and status code",
            ),
            &["service", "method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "huddle_grpc_server_request_duration_seconds",
                "Time from a call's arrival to its response headers",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["service", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    fn record(&self, service: &str, method: &str, code: &str, started: Instant) {
        self.requests
            .with_label_values(&[service, method, code])
            .inc();
        self.duration
            .with_label_values(&[service, method])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[derive(Clone)]
pub struct RequestLayer {
    metrics: GrpcMetrics,
}

impl RequestLayer {
    pub fn new(metrics: GrpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RequestService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let span =
            tracing::info_span!("grpc", service = %short_name(&service), %method, request_id);
        // The clone is the ready one's twin; the ready one serves this call
        // (tower's rule for services driven through poll_ready).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let future = inner.call(req);
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => status_code(response.headers()),
                    Err(_) => "Unknown",
                };
                // Unknown paths answer Unimplemented: label them as one, so a
                // caller inventing method names cannot mint metric series.
                let method = if code == "Unimplemented" {
                    "OTHER"
                } else {
                    method.as_str()
                };
                metrics.record(&service, method, code, started);
                result
            }
            .instrument(span),
        )
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// `huddle.user.v1.UserService` → `user` for log lines; other services as is.
fn short_name(service: &str) -> &str {
    service
        .strip_prefix("huddle.")
        .and_then(|s| s.split('.').next())
        .unwrap_or(service)
}

/// A failed unary call answers trailers-only, with `grpc-status` among the
/// headers; a response without it is a success whose status follows in the
/// trailers.
fn status_code(headers: &http::HeaderMap) -> &'static str {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    code_name(tonic::Code::from_i32(code))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/huddle.user.v1.UserService/GetUser"),
            ("huddle.user.v1.UserService".into(), "GetUser".into())
        );
        assert_eq!(short_name("huddle.user.v1.UserService"), "user");
        assert_eq!(short_name("grpc.health.v1.Health"), "grpc.health.v1.Health");
    }

    #[test]
    fn trailers_only_errors_carry_their_code_in_the_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_code(&headers), "NotFound");
    }
}
