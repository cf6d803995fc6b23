//! `/metrics` for standalone service processes (the gateway serves its own),
//! on actix-web like the gateway: request heads must arrive within
//! `HEAD_TIMEOUT`, idle connections close, so a client that connects and
//! sends nothing (or a byte a minute) cannot hold a task and a socket open
//! forever. Anything but `GET /metrics` is a 404 (405 for another method).

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use huddle_common::Shutdown;
use prometheus::{Encoder, TextEncoder};

/// Bound on receiving a request head; past it the connection gets a 408.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections close after this.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Scrapes are short: in-flight ones get this long at shutdown.
const SHUTDOWN_SECS: u64 = 5;

async fn metrics(registry: web::Data<prometheus::Registry>) -> HttpResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut body) {
        tracing::error!(error = %e, "cannot encode metrics");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(body)
}

/// Binds `addr` and returns a future that serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: prometheus::Registry,
    shutdown: Shutdown,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    serve_with(addr, registry, shutdown, HEAD_TIMEOUT)
        .await
        .map(|(_, serving)| serving)
}

async fn serve_with(
    addr: SocketAddr,
    registry: prometheus::Registry,
    shutdown: Shutdown,
    head_timeout: Duration,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), std::io::Error> {
    let registry = web::Data::new(registry);
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .service(web::resource("/metrics").route(web::get().to(metrics)))
    })
    .workers(1)
    .disable_signals()
    .client_request_timeout(head_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(KEEP_ALIVE)
    .shutdown_timeout(SHUTDOWN_SECS)
    .listen(listener)?
    .run();
    tracing::info!(addr = %bound, "metrics listening");
    Ok((bound, async move {
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "metrics server failed");
                }
                return;
            }
            () = shutdown.wait() => {}
        }
        let (_, result) = tokio::join!(handle.stop(true), server);
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    /// A client that connects and sends nothing is dropped within the head
    /// timeout. Seen to fail with `client_request_timeout(Duration::ZERO)`
    /// (no timeout, as the former hand-written server's bare `read`): the
    /// connection stayed open and this test's 10 s bound fired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_client_is_cut_off_and_metrics_are_served() {
        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounter::new("huddle_test_total", "test").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc();
        let shutdown = Shutdown::new();
        let (addr, serving) = serve_with(
            "127.0.0.1:0".parse().unwrap(),
            registry,
            shutdown.clone(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let server = tokio::spawn(serving);

        let response = request(
            addr,
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("huddle_test_total 1"), "{response}");
        let response = request(
            addr,
            b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");

        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let cut = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf)).await;
        assert!(cut.is_ok(), "a silent client held its connection for 10 s");

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("metrics server did not stop")
            .unwrap();
    }
}
