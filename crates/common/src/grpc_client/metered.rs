//! The channel type every client uses: a balanced [`Channel`] that counts
//! each call it carries (service, method, gRPC code, time to the response
//! headers) in the process's [`GrpcMetrics`].

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use tonic::{body::Body, transport::Channel};

use crate::grpc_metrics::{GrpcMetrics, status_code};

#[derive(Clone)]
pub struct GrpcChannel {
    inner: Channel,
    metrics: Option<GrpcMetrics>,
}

impl GrpcChannel {
    pub fn new(inner: Channel, metrics: Option<GrpcMetrics>) -> Self {
        Self { inner, metrics }
    }
}

impl tower::Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(metrics) = self.metrics.clone() else {
            return Box::pin(self.inner.call(req));
        };
        // A `Uri` clone shares its bytes: no allocation per call.
        let uri = req.uri().clone();
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => status_code(response.headers()),
                // Never reached a server (connect refused, timed out).
                Err(_) => "Unavailable",
            };
            metrics.record_client(uri.path(), code, started);
            result
        })
    }
}
