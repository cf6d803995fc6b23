//! Request ids: one per HTTP request, taken from the caller when it is safe to
//! echo and log, otherwise generated; carried on the response, in the request's
//! tracing span and in the metadata of every gRPC call the request makes.

use std::future::{Ready, ready};
use std::time::Instant;

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use huddle_common::REQUEST_ID_HEADER;
use tracing::Instrument;
use uuid::Uuid;

const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    /// Accepts a caller's id only when it is 1..=64 characters of
    /// `[A-Za-z0-9._-]`: anything else could forge log lines or headers.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(raw.to_owned()))
    }

    fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Copies the id into a gRPC request's metadata.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Ok(value) = self.0.parse() {
            request.metadata_mut().insert(REQUEST_ID_HEADER, value);
        }
    }
}

impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The middleware always sets one; a fresh id covers apps built without it.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(Ok(id.unwrap_or_else(Self::generate)))
    }
}

/// Middleware (for `middleware::from_fn`): assigns the id, runs the request inside a span
/// carrying it, echoes it on the response and logs one line per request.
pub async fn middleware<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let id = RequestId::from_header(req.headers().get(REQUEST_ID_HEADER));
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    // The path only: query strings can carry personal data (`?email=`).
    let path = req.path().to_owned();
    let span = tracing::info_span!(
        "http_request",
        request_id = id.as_str(),
        method = %method,
        path = %path
    );
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            latency_ms,
            "request finished"
        );
    });
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_ids() {
        for ok in ["a", "abc-123", "A.b_C-9", &"x".repeat(64)] {
            assert_eq!(RequestId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_or_oversized_ids() {
        for bad in [
            "",
            &"x".repeat(65),
            "has space",
            "new\nline",
            "semi;colon",
            "slash/",
            "ünicode",
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_rejected_header_is_replaced_by_a_uuid() {
        let header = HeaderValue::from_static("bad id");
        let id = RequestId::from_header(Some(&header));
        assert!(Uuid::parse_str(id.as_str()).is_ok());
        let id = RequestId::from_header(None);
        assert!(Uuid::parse_str(id.as_str()).is_ok());
        let header = HeaderValue::from_static("req-42");
        assert_eq!(RequestId::from_header(Some(&header)).as_str(), "req-42");
    }

    #[test]
    fn the_id_goes_into_grpc_metadata() {
        let id = RequestId::parse("req-42").unwrap();
        let mut request = tonic::Request::new(());
        id.attach(&mut request);
        assert_eq!(request.metadata().get(REQUEST_ID_HEADER).unwrap(), "req-42");
    }
}
