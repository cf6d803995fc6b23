//! The service kit: everything a Huddle gRPC service needs besides its
//! domain. A service binds a [`Kit`] (listener with `TCP_NODELAY`, its
//! database pool, its outbox), builds its API from the kit's parts, and
//! hands the API to [`Kit::serve`], which adds health, reflection (v1 and
//! v1alpha), the request layer (spans, metrics) and the background relays,
//! and drains everything on shutdown.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use cache_core::Cache;
use diesel_migrations::EmbeddedMigrations;
use futures::future::BoxFuture;
use huddle_common::{Shutdown, grpc_client::ChannelError};
use huddle_db::{Database, DbError};
use tonic::{body::Body, server::NamedService, transport::server::TcpIncoming};

mod complete;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod layer;
pub mod listener;
pub mod outbox;
pub mod relay;
pub mod users;

pub use complete::to_completion;
pub use error::{ServiceError, db_code, to_status};
pub use huddle_common::grpc_metrics::GrpcMetrics;
pub use idempotency::{IdempotencyError, IdempotencyKey};
pub use outbox::{CrashedAfterCommit, Failpoints, Outbox, OutboxError, Recorded, Settled};

/// What every service in one process shares.
#[derive(Clone)]
pub struct Shared {
    pub cache: Cache,
    pub grpc_metrics: GrpcMetrics,
    pub shutdown: Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("peer address: {0}")]
    Peer(#[from] ChannelError),
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A running service's future: resolves when it has stopped.
pub type Server = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send + 'static>>;

/// A bound, not yet running, service.
pub struct Bound {
    pub addr: SocketAddr,
    /// The service's database handle (tests read its checkout count).
    pub db: Database,
    pub outbox: Outbox,
    pub failpoints: Arc<Failpoints>,
    pub server: Server,
}

/// The parts of a service that do not depend on its domain.
pub struct Kit {
    pub addr: SocketAddr,
    pub db: Database,
    pub cache: Cache,
    pub outbox: Outbox,
    pub failpoints: Arc<Failpoints>,
    migrations: EmbeddedMigrations,
    listener: tokio::net::TcpListener,
    shared: Shared,
    background: Vec<BoxFuture<'static, ()>>,
}

/// Where a service listens and which database it owns.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Port 0 allowed (tests).
    pub listen_addr: SocketAddr,
    /// Full URL of the service's own database.
    pub database_url: String,
    pub db_pool_size: usize,
}

impl Kit {
    /// Where this process counts gRPC calls, for the service's own clients
    /// of other services (`ChannelOptions::metrics`).
    pub fn grpc_metrics(&self) -> GrpcMetrics {
        self.shared.grpc_metrics.clone()
    }

    /// Binds the listener and opens the pool (lazily: no connection yet).
    /// `name` labels the service's outbox in logs and metrics; the service
    /// reports NOT_SERVING while its database lacks any of `migrations`.
    pub async fn bind(
        name: &'static str,
        migrations: EmbeddedMigrations,
        config: &ServiceConfig,
        shared: Shared,
    ) -> Result<Self, ServeError> {
        let (listener, addr) =
            listen(config.listen_addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen_addr,
                    source,
                })?;
        let db = Database::connect(&config.database_url, config.db_pool_size)?;
        // Reads held by this service's own pending invalidations only.
        let cache = shared.cache.scoped(name);
        // The outbox's queries (relay ticks, row deletes) are not a
        // request's reads: tests count those through `db.checkouts()`.
        let outbox = Outbox::new(db.untracked(), cache.clone(), name);
        Ok(Self {
            addr,
            db,
            cache,
            failpoints: outbox.failpoints(),
            outbox,
            migrations,
            listener,
            shared,
            background: Vec::new(),
        })
    }

    pub fn shutdown(&self) -> Shutdown {
        self.shared.shutdown.clone()
    }

    /// Runs `relay` beside the server until shutdown.
    pub fn with_relay<R: relay::Relay>(mut self, relay: R, policy: relay::Policy) -> Self {
        let shutdown = self.shutdown();
        self.background
            .push(Box::pin(relay::run(relay, policy, shutdown)));
        self
    }

    /// Builds the server around `api`; awaiting [`Bound::server`] runs it
    /// until shutdown, then drains in-flight calls and closes the pools.
    pub fn serve<S>(self, api: S) -> Result<Bound, ServeError>
    where
        S: tower::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(huddle_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let Self {
            addr,
            db,
            cache,
            outbox,
            failpoints,
            migrations,
            listener,
            shared,
            mut background,
        } = self;
        let shutdown = shared.shutdown.clone();
        background.push(Box::pin(outbox.clone().run_relay(shutdown.clone())));
        background.push(Box::pin(outbox.clone().listen(shutdown.clone())));
        background.push(Box::pin(relay::run(
            idempotency::Sweeper::new(db.untracked(), S::NAME),
            idempotency::SWEEP_POLICY,
            shutdown.clone(),
        )));
        let watched_db = db.clone();
        let first_pass = outbox.clone();
        let server = async move {
            let (readiness, health) = health::Readiness::start(
                watched_db.clone(),
                cache.clone(),
                S::NAME,
                Some(migrations),
            )
            .await;
            // Rows a crash left behind are applied before the first request
            // is served (until then the outbox holds reads off Redis; if
            // this pass fails, they stay held and the relay retries).
            if let Err(e) = first_pass.drain().await {
                tracing::warn!(error = %e, service = S::NAME, "outbox not drained at start");
            }
            let mut tasks: Vec<_> = background.into_iter().map(tokio::spawn).collect();
            tasks.push(tokio::spawn(warn_if_redis_may_evict(
                cache.clone(),
                S::NAME,
            )));
            tasks.push(tokio::spawn(readiness.run(shutdown.clone())));
            tracing::info!(%addr, service = S::NAME, "listening");
            let serving = tonic::transport::Server::builder()
                .layer(layer::RequestLayer::new(shared.grpc_metrics))
                .add_service(health)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(api)
                .serve_with_incoming_shutdown(incoming(listener), shutdown.clone().wait());
            let result = bounded_drain(serving, shutdown, DRAIN_BOUND, S::NAME).await;
            for task in tasks {
                task.abort();
            }
            watched_db.close();
            cache.close();
            tracing::info!(service = S::NAME, "stopped");
            Ok(result?)
        };
        Ok(Bound {
            addr,
            db,
            outbox,
            failpoints,
            server: Box::pin(server),
        })
    }
}

/// How long a gRPC server drains after shutdown before it stops waiting for
/// its connections: the drain part of deploy/README.md's shutdown budget
/// (preStop 20 s + drain 30 s + margin = terminationGracePeriodSeconds 60).
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// Runs `serving` until it ends, or until `bound` after `shutdown` fired.
/// tonic's graceful shutdown waits for every connection to close, with no
/// limit: one peer that stops reading (the server's GOAWAY and PING left
/// unread) held processes on SIGTERM for over an hour (issue 20, item 9).
/// Past the bound the connections left are cut when the process exits.
pub async fn bounded_drain<E>(
    serving: impl Future<Output = Result<(), E>>,
    shutdown: Shutdown,
    bound: Duration,
    service: &str,
) -> Result<(), E> {
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        () = shutdown.wait() => {}
    }
    match tokio::time::timeout(bound, serving).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                service,
                ?bound,
                "drain cut short: connections still open past the bound are dropped"
            );
            Ok(())
        }
    }
}

/// Correctness needs a Redis that never evicts (an evicted tag set leaves
/// values no write can find): said once at start, loudly when not so.
async fn warn_if_redis_may_evict(cache: Cache, service: &'static str) {
    match cache.check_eviction().await {
        cache_core::EvictionCheck::Safe(config) => {
            tracing::info!(service, %config, "redis never evicts");
        }
        cache_core::EvictionCheck::Unsafe(config) => tracing::warn!(
            service, %config,
            "redis may evict keys: set maxmemory-policy noeviction (or no maxmemory), or a tag \
             set evicted under memory pressure leaves stale values until their TTL"
        ),
        cache_core::EvictionCheck::Unknown(why) => tracing::warn!(
            service, %why,
            "cannot read redis' eviction policy: make sure it is noeviction"
        ),
    }
}

/// Binds a gRPC listener (port 0 allowed, for tests) and returns it with the
/// address it actually got.
pub async fn listen(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// The accepted connections of `listener`, with `TCP_NODELAY`: gRPC writes
/// small frames, and Nagle's algorithm against the peer's delayed ACK
/// stalled them up to 40 ms (p99 42 ms → 2 ms when set).
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// Seen to fail (`nodelay() == false`) with `with_nodelay` removed.
    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let (listener, addr) = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut incoming = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
