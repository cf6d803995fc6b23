//! gRPC request metrics of one process, both sides: calls this process
//! serves (`huddle_grpc_server_*`, recorded by the kit's request layer) and
//! calls it makes to other services (`huddle_grpc_client_*`, recorded by
//! [`crate::grpc_client::GrpcChannel`]). Registered once per process: in
//! `huddle all` the gateway and every service share one registry.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone)]
struct Side {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Side {
    /// `[requests, duration]` as `(name, help)`; the names are literals so
    /// the deploy check finds every metric the dashboards may use.
    fn register(
        registry: &Registry,
        [requests, duration]: [(&str, &str); 2],
    ) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(requests.0, requests.1),
            &["service", "method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(duration.0, duration.1).buckets(BUCKETS.to_vec()),
            &["service", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    fn record(&self, path: &str, code: &str, started: Instant) {
        let (service, method) = split_path(path);
        // Unknown paths answer Unimplemented: label them as one, so a caller
        // inventing method names cannot mint metric series.
        let method = if code == "Unimplemented" {
            "OTHER"
        } else {
            method
        };
        self.requests
            .with_label_values(&[service, method, code])
            .inc();
        self.duration
            .with_label_values(&[service, method])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[derive(Clone)]
pub struct GrpcMetrics {
    server: Side,
    client: Side,
}

impl GrpcMetrics {
    /// Fails if they are already in `registry` (one set per process).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            server: Side::register(
                registry,
                [
                    (
                        "huddle_grpc_server_requests_total",
                        "gRPC calls served, by service, method and status code",
                    ),
                    (
                        "huddle_grpc_server_request_duration_seconds",
                        "Time from a call's arrival to its response headers",
                    ),
                ],
            )?,
            client: Side::register(
                registry,
                [
                    (
                        "huddle_grpc_client_requests_total",
                        "gRPC calls made to other services, by service, method and status \
                         code (Unavailable also for calls that never reached a server)",
                    ),
                    (
                        "huddle_grpc_client_request_duration_seconds",
                        "Time from a call's start to its response headers, as the caller saw it",
                    ),
                ],
            )?,
        })
    }

    /// A served call to `path` (`/pkg.Service/Method`) answered `code`.
    pub fn record_server(&self, path: &str, code: &str, started: Instant) {
        self.server.record(path, code, started);
    }

    /// A call made to `path` answered `code`.
    pub fn record_client(&self, path: &str, code: &str, started: Instant) {
        self.client.record(path, code, started);
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// `huddle.user.v1.UserService` → `user` for log lines; other services as is.
pub fn short_name(service: &str) -> &str {
    service
        .strip_prefix("huddle.")
        .and_then(|s| s.split('.').next())
        .unwrap_or(service)
}

/// A failed unary call answers trailers-only, with `grpc-status` among the
/// headers; a response without it is a success whose status follows in the
/// trailers (a streaming call's is known only at its end; its headers say
/// the stream was opened).
pub fn status_code(headers: &http::HeaderMap) -> &'static str {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    code_name(tonic::Code::from_i32(code))
}

pub fn code_name(code: tonic::Code) -> &'static str {
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
            ("huddle.user.v1.UserService", "GetUser")
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

    #[test]
    fn unknown_methods_share_one_series() {
        let registry = Registry::new();
        let metrics = GrpcMetrics::register(&registry).unwrap();
        for method in ["A", "B"] {
            metrics.record_client(&format!("/x.S/{method}"), "Unimplemented", Instant::now());
        }
        let families = registry.gather();
        let client = families
            .iter()
            .find(|f| f.name() == "huddle_grpc_client_requests_total")
            .unwrap();
        assert_eq!(client.get_metric().len(), 1);
        assert!(
            GrpcMetrics::register(&registry).is_err(),
            "once per process"
        );
    }
}
