//! gRPC client channels that spread calls over every replica of a service.
//!
//! HTTP/2 multiplexes every call on one long-lived connection, so a client
//! dialling a Kubernetes ClusterIP Service is pinned to whichever pod the
//! first connection landed on: scaling a service out gives the new pods no
//! load. Services are therefore exposed as *headless* Services (the DNS name
//! resolves to every ready pod's IP) and [`balanced_channel`] balances over
//! those addresses on the client side, re-resolving the name periodically as
//! pods come and go.
//!
//! - `http://user:50051` (a DNS name) or `http://10.1.2.3:50051` (an IP
//!   literal, which resolves to itself): a `tower` power-of-two-choices
//!   balancer over [`ChannelOptions::connections_per_address`] lazy
//!   connections per resolved address. A background task
//!   re-resolves the name every [`ChannelOptions::refresh_interval`] and
//!   inserts new addresses before removing gone ones, so the set is never
//!   empty mid-update. A failed or empty resolution keeps the last good set
//!   (a DNS hiccup must not drop healthy pods); before the first good answer
//!   the name itself is the only endpoint, so calls fail fast with
//!   `UNAVAILABLE` instead of waiting for an address. The task ends when the
//!   last clone of the channel is dropped.
//!
//! Several connections per address: one HTTP/2 connection is driven by one
//! task, so all of a process's calls to a service through one connection
//! queue behind each other on one core (ARCHITECTURE.md, "Where a cached
//! read's time goes").

use std::{
    collections::BTreeSet,
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint, Uri, channel::Change};

use crate::grpc_metrics::GrpcMetrics;

mod metered;

pub use metered::GrpcChannel;

/// How a client channel connects, times out and follows DNS.
#[derive(Clone)]
pub struct ChannelOptions {
    /// Bound on establishing one TCP + HTTP/2 connection.
    pub connect_timeout: Duration,
    /// Client-side deadline of each call (`None`: only the call's own
    /// `grpc-timeout`, if any).
    pub request_timeout: Option<Duration>,
    /// How often a DNS name is resolved again to pick up added or removed pods.
    pub refresh_interval: Duration,
    /// HTTP/2 PING interval, so a connection to a vanished pod is noticed.
    pub keep_alive_interval: Option<Duration>,
    /// Where the calls made over the channel are counted (`None`: nowhere).
    pub metrics: Option<GrpcMetrics>,
    /// HTTP/2 connections to each address (at least 1).
    pub connections_per_address: u8,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: None,
            refresh_interval: Duration::from_secs(5),
            keep_alive_interval: Some(Duration::from_secs(30)),
            metrics: None,
            connections_per_address: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid grpc target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("a grpc channel must be created inside a tokio runtime")]
    NoRuntime,
}

/// A channel to `target` (`host:port`, `http://host:port`), balanced over
/// every address the host name resolves to. Connects lazily: creating it
/// never fails because the service is down. Must be called inside a tokio
/// runtime (it spawns the connection and DNS-refresh tasks).
pub fn balanced_channel(target: &str, opts: ChannelOptions) -> Result<GrpcChannel, ChannelError> {
    let metrics = opts.metrics.clone();
    let (channel, _endpoints) = balanced_channel_with(target, opts, DnsResolver)?;
    Ok(GrpcChannel::new(channel, metrics))
}

/// Resolves a host name to socket addresses. The real one asks the system
/// resolver; tests inject their own.
trait Resolve: Send + Sync + 'static {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
}

struct DnsResolver;

impl Resolve for DnsResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// One endpoint of the balancer: a resolved address, or the unresolved name
/// used until the first resolution succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Addr(SocketAddr),
    Name,
}

#[derive(Debug, Clone)]
struct Target {
    /// `scheme://host:port`, kept as the origin (`:authority`) of every call.
    uri: Uri,
    scheme: String,
    host: String,
    port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uri)
    }
}

fn parse_target(target: &str) -> Result<Target, ChannelError> {
    let invalid = |reason: &str| ChannelError::InvalidTarget {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if target.contains("://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    let uri = with_scheme
        .parse::<Uri>()
        .map_err(|e| invalid(&e.to_string()))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("no host"))?;
    let raw_authority = uri.authority().map_or("", |a| a.as_str());
    let explicit_port = match raw_authority.rsplit_once(':') {
        Some((_, port)) if !raw_authority.ends_with(']') => Some(port),
        _ => None,
    };
    let port = match (explicit_port, scheme.as_str()) {
        (Some(port), _) => port.parse().map_err(|_| invalid("bad port"))?,
        (None, "http") => 80,
        (None, "https") => 443,
        (None, _) => return Err(invalid("no port")),
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(invalid("a grpc target has no path"));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let uri = format!("{scheme}://{}", authority(&host, port))
        .parse::<Uri>()
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(Target {
        uri,
        scheme,
        host,
        port,
    })
}

fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

fn endpoint(target: &Target, key: Key, opts: &ChannelOptions) -> Result<Endpoint, ChannelError> {
    let url = match key {
        Key::Addr(addr) => format!("{}://{addr}", target.scheme),
        Key::Name => target.uri.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| ChannelError::InvalidTarget {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .origin(target.uri.clone())
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true);
    if let Some(timeout) = opts.request_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    if let Some(interval) = opts.keep_alive_interval {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_while_idle(true);
    }
    Ok(endpoint)
}

/// [`balanced_channel`] with an injected resolver; also returns the set of
/// endpoints the balancer was last told about (updated after each change).
fn balanced_channel_with<R: Resolve>(
    target: &str,
    opts: ChannelOptions,
    resolver: R,
) -> Result<(Channel, watch::Receiver<BTreeSet<Key>>), ChannelError> {
    let target = parse_target(target)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ChannelError::NoRuntime);
    }
    // Validate the endpoint settings once, up front, so the refresh task
    // cannot fail on them later.
    endpoint(&target, Key::Name, &opts)?;
    // An IP literal goes the same way: it "resolves" to itself at once.
    let (channel, changes) = Channel::balance_channel::<(Key, u8)>(64);
    let (applied_tx, applied) = watch::channel(BTreeSet::new());
    tokio::spawn(follow_dns(target, opts, resolver, changes, applied_tx));
    Ok((channel, applied))
}

/// Keeps the balancer's endpoint set equal to what `target` resolves to,
/// until the channel is dropped.
async fn follow_dns<R: Resolve>(
    target: Target,
    opts: ChannelOptions,
    resolver: R,
    changes: mpsc::Sender<Change<(Key, u8), Endpoint>>,
    applied: watch::Sender<BTreeSet<Key>>,
) {
    let mut current = BTreeSet::new();
    let mut failing = false;
    loop {
        let resolved = match tokio::time::timeout(
            opts.connect_timeout,
            resolver.resolve(&target.host, target.port),
        )
        .await
        {
            Ok(Ok(addrs)) if !addrs.is_empty() => {
                failing = false;
                Some(addrs)
            }
            outcome => {
                if !failing {
                    let why = match outcome {
                        Ok(Ok(_)) => "no addresses".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    tracing::warn!(%target, error = %why, "cannot resolve grpc target; keeping the last known endpoints");
                }
                failing = true;
                None
            }
        };
        let next = desired_endpoints(&current, resolved);
        let (added, removed) = diff(&current, &next);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(%target, ?added, ?removed, "grpc endpoints changed");
        }
        // Inserts first, so the balancer never sees an empty set mid-update.
        let conns = opts.connections_per_address.max(1);
        for key in added {
            for conn in 0..conns {
                let Ok(endpoint) = endpoint(&target, key, &opts) else {
                    continue; // validated in `balanced_channel_with`
                };
                if changes
                    .send(Change::Insert((key, conn), endpoint))
                    .await
                    .is_err()
                {
                    return; // the channel was dropped
                }
            }
            current.insert(key);
        }
        for key in removed {
            for conn in 0..conns {
                if changes.send(Change::Remove((key, conn))).await.is_err() {
                    return;
                }
            }
            current.remove(&key);
        }
        applied.send_replace(current.clone());
        tokio::select! {
            () = changes.closed() => return,
            () = tokio::time::sleep(opts.refresh_interval) => {}
        }
    }
}

/// The endpoint set to move to: the resolved addresses; or, when resolution
/// failed or found nothing, the current set (the name itself if still empty).
fn desired_endpoints(current: &BTreeSet<Key>, resolved: Option<Vec<SocketAddr>>) -> BTreeSet<Key> {
    match resolved {
        Some(addrs) if !addrs.is_empty() => addrs.into_iter().map(Key::Addr).collect(),
        _ if current.is_empty() => BTreeSet::from([Key::Name]),
        _ => current.clone(),
    }
}

/// `(added, removed)` to go from `current` to `next`, in a stable order.
fn diff(current: &BTreeSet<Key>, next: &BTreeSet<Key>) -> (Vec<Key>, Vec<Key>) {
    (
        next.difference(current).copied().collect(),
        current.difference(next).copied().collect(),
    )
}

#[cfg(test)]
mod tests;
