//! The request layer every gRPC server carries: one span per call (service,
//! method, the caller's request id) and the server's request metrics. It
//! replaces a span-and-instrument block in every handler.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use huddle_common::{
    REQUEST_ID_HEADER,
    grpc_metrics::{GrpcMetrics, short_name, split_path, status_code},
};
use tracing::Instrument;

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
        // A `Uri` clone shares its bytes: the path outlives the request
        // without an allocation per call.
        let uri = req.uri().clone();
        let (service, method) = split_path(uri.path());
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let span = tracing::info_span!("grpc", service = %short_name(service), %method, request_id);
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
                metrics.record_server(uri.path(), code, started);
                result
            }
            .instrument(span),
        )
    }
}
