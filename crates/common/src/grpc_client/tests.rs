use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{
    pb::{HealthCheckRequest, health_client::HealthClient, health_server::HealthServer},
    server::{HealthService, health_reporter},
};

use super::*;
use crate::Shutdown;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn keys(addrs: &[&str]) -> BTreeSet<Key> {
    addrs.iter().map(|a| Key::Addr(addr(a))).collect()
}

fn fast() -> ChannelOptions {
    ChannelOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Some(Duration::from_secs(5)),
        refresh_interval: Duration::from_millis(20),
        keep_alive_interval: None,
        metrics: None,
        connections_per_address: 1,
    }
}

/// A resolver whose answer the test changes at will, like DNS as pods come
/// and go behind a headless Service.
#[derive(Clone, Default)]
struct FakeDns(Arc<Mutex<Option<Vec<SocketAddr>>>>, Arc<AtomicUsize>);

impl FakeDns {
    fn answer(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = Some(addrs.to_vec());
    }
    fn fail(&self) {
        *self.0.lock().unwrap() = None;
    }
    /// How many times the channel has asked.
    fn lookups(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
}

impl Resolve for FakeDns {
    async fn resolve(&self, _host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let answer = self.0.lock().unwrap();
        match &*answer {
            Some(addrs) => Ok(addrs
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()),
            None => Err(io::Error::other("no such host")),
        }
    }
}

/// A gRPC health server on `ip:port` that counts the calls it answers.
struct Pod {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    /// Client ends of the connections calls arrived on.
    peers: Arc<Mutex<BTreeSet<SocketAddr>>>,
    shutdown: Shutdown,
}

impl Pod {
    async fn start(ip: IpAddr, port: u16) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((ip, port)).await?;
        let addr = listener.local_addr()?;
        let (reporter, _) = health_reporter();
        let calls = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(BTreeSet::new()));
        let (counter, seen) = (calls.clone(), peers.clone());
        let service = HealthServer::with_interceptor(
            HealthService::from_health_reporter(reporter),
            move |request: tonic::Request<()>| {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(peer) = request.remote_addr() {
                    seen.lock().unwrap().insert(peer);
                }
                Ok(request)
            },
        );
        let shutdown = Shutdown::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal.wait())
                .await
        });
        Ok(Self {
            addr,
            calls,
            peers,
            shutdown,
        })
    }

    fn take_calls(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Two pods on one port, at 127.0.0.1 and 127.0.0.2 (all of 127/8 is
/// loopback on Linux), as two pod IPs behind one headless Service.
async fn two_pods() -> (Pod, Pod) {
    for _ in 0..20 {
        let first = Pod::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
            .await
            .unwrap();
        if let Ok(second) =
            Pod::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), first.addr.port()).await
        {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

async fn wait_for(applied: &mut watch::Receiver<BTreeSet<Key>>, want: BTreeSet<Key>) {
    let waited = tokio::time::timeout(
        Duration::from_secs(5),
        applied.wait_for(|current| *current == want),
    )
    .await
    .is_ok_and(|changed| changed.is_ok());
    assert!(
        waited,
        "endpoints never became {want:?}; last {:?}",
        *applied.borrow()
    );
}

async fn check<T>(client: &mut HealthClient<T>, calls: usize)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    for _ in 0..calls {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    }
}

#[test]
fn diff_lists_added_and_removed_addresses() {
    let current = keys(&["10.0.0.1:50051", "10.0.0.2:50051"]);
    let next = keys(&["10.0.0.2:50051", "10.0.0.3:50051"]);
    let (added, removed) = diff(&current, &next);
    assert_eq!(added, vec![Key::Addr(addr("10.0.0.3:50051"))]);
    assert_eq!(removed, vec![Key::Addr(addr("10.0.0.1:50051"))]);
    assert_eq!(diff(&next, &next), (vec![], vec![]));
}

#[test]
fn a_failed_or_empty_resolution_keeps_the_last_good_set() {
    let current = keys(&["10.0.0.1:50051"]);
    assert_eq!(desired_endpoints(&current, None), current);
    assert_eq!(desired_endpoints(&current, Some(vec![])), current);
    assert_eq!(
        desired_endpoints(&current, Some(vec![addr("10.0.0.9:50051")])),
        keys(&["10.0.0.9:50051"])
    );
    // Nothing known yet: dial the name itself, which fails fast.
    assert_eq!(
        desired_endpoints(&BTreeSet::new(), None),
        BTreeSet::from([Key::Name])
    );
    // The first good answer replaces the name.
    let (added, removed) = diff(
        &BTreeSet::from([Key::Name]),
        &desired_endpoints(&BTreeSet::from([Key::Name]), Some(vec![addr("10.0.0.1:1")])),
    );
    assert_eq!(added, vec![Key::Addr(addr("10.0.0.1:1"))]);
    assert_eq!(removed, vec![Key::Name]);
}

#[test]
fn targets_parse_with_or_without_scheme() {
    let t = parse_target("user:50051").unwrap();
    assert_eq!(
        (t.scheme.as_str(), t.host.as_str(), t.port),
        ("http", "user", 50051)
    );
    assert_eq!(t.uri.to_string(), "http://user:50051/");
    let t = parse_target("http://user.huddle.svc.cluster.local:50051").unwrap();
    assert_eq!(t.host, "user.huddle.svc.cluster.local");
    let t = parse_target("http://[::1]:50051").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 50051));
    assert_eq!(parse_target("http://user").unwrap().port, 80);
    for bad in [
        "",
        "http://",
        "user:port",
        "http://user:50051/path",
        "ftp://user",
    ] {
        assert!(parse_target(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn creating_a_channel_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        balanced_channel("http://user:50051", ChannelOptions::default()),
        Err(ChannelError::NoRuntime)
    ));
}

#[tokio::test]
async fn calls_spread_over_every_resolved_pod_and_follow_dns_changes() {
    let (a, b) = two_pods().await;
    let port = a.addr.port();
    let dns = FakeDns::default();
    dns.answer(&[a.addr, b.addr]);
    let (channel, mut applied) =
        balanced_channel_with(&format!("http://user.test:{port}"), fast(), dns.clone()).unwrap();
    let mut client = HealthClient::new(channel);

    wait_for(
        &mut applied,
        keys(&[&a.addr.to_string(), &b.addr.to_string()]),
    )
    .await;
    check(&mut client, 200).await;
    let (to_a, to_b) = (a.take_calls(), b.take_calls());
    assert_eq!(to_a + to_b, 200);
    assert!(to_a > 20 && to_b > 20, "unbalanced: {to_a} vs {to_b}");

    // Scale in: the pod leaves DNS, and gets no more calls.
    dns.answer(&[a.addr]);
    wait_for(&mut applied, keys(&[&a.addr.to_string()])).await;
    check(&mut client, 50).await;
    assert_eq!((a.take_calls(), b.take_calls()), (50, 0));

    // A DNS failure keeps the last good set: checked after the channel has
    // asked (and been refused) twice, so a refresh that never ran cannot
    // pass for one that kept the set.
    dns.fail();
    let asked = dns.lookups();
    tokio::time::timeout(Duration::from_secs(5), async {
        while dns.lookups() < asked + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the channel stopped refreshing");
    assert_eq!(*applied.borrow(), keys(&[&a.addr.to_string()]));
    check(&mut client, 10).await;
    assert_eq!(a.take_calls(), 10);

    // Scale out again: the new pod gets traffic without a reconnect.
    dns.answer(&[a.addr, b.addr]);
    wait_for(
        &mut applied,
        keys(&[&a.addr.to_string(), &b.addr.to_string()]),
    )
    .await;
    check(&mut client, 200).await;
    assert!(b.take_calls() > 20);
}

#[tokio::test]
async fn an_unresolvable_name_fails_fast_instead_of_hanging() {
    // The resolver fails, so the balancer dials the name itself; the system
    // resolves it (localhost) to a port nobody listens on, which refuses.
    // The port is held by a socket that never listens (bound, no listen()),
    // so no other test can take it meanwhile and answer.
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = holder.local_addr().unwrap().port();
    let dns = FakeDns::default();
    dns.fail();
    let (channel, mut applied) =
        balanced_channel_with(&format!("http://localhost:{port}"), fast(), dns).unwrap();
    wait_for(&mut applied, BTreeSet::from([Key::Name])).await;
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        HealthClient::new(channel).check(HealthCheckRequest::default()),
    )
    .await
    .expect("a call with no resolvable endpoint must fail, not hang");
    assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn an_ip_literal_connects_directly() {
    let pod = Pod::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .await
        .unwrap();
    let channel = balanced_channel(&format!("{}", pod.addr), fast()).unwrap();
    check(&mut HealthClient::new(channel), 3).await;
    assert_eq!(pod.take_calls(), 3);
}

/// Calls spread over several connections to one address, so they are not
/// all driven by one HTTP/2 connection's task.
///
/// Seen to fail with one endpoint per address (as before): one peer.
#[tokio::test]
async fn calls_spread_over_several_connections_per_address() {
    let pod = Pod::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .await
        .unwrap();
    let options = ChannelOptions {
        connections_per_address: 4,
        ..fast()
    };
    let channel = balanced_channel(&format!("{}", pod.addr), options).unwrap();
    let calls = (0..64).map(|_| {
        let mut client = HealthClient::new(channel.clone());
        tokio::spawn(async move { check(&mut client, 5).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap();
    }
    let peers = pod.peers.lock().unwrap().len();
    assert!((2..=4).contains(&peers), "{peers} connections");
}

/// Calls made over the channel are counted by service, method and code; a
/// call that never reaches a server counts as Unavailable.
///
/// Seen to fail with `balanced_channel` dropping `opts.metrics`: no series.
#[tokio::test]
async fn calls_are_counted_by_method_and_code() {
    let registry = prometheus::Registry::new();
    let options = ChannelOptions {
        metrics: Some(GrpcMetrics::register(&registry).unwrap()),
        ..fast()
    };
    let pod = Pod::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .await
        .unwrap();
    let channel = balanced_channel(&format!("{}", pod.addr), options.clone()).unwrap();
    check(&mut HealthClient::new(channel), 2).await;
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = balanced_channel(&format!("{}", holder.local_addr().unwrap()), options).unwrap();
    let refused = HealthClient::new(dead)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    let count = |code: &str| {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "huddle_grpc_client_requests_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.contains(&("service", "grpc.health.v1.Health"))
                    && labels.contains(&("method", "Check"))
                    && labels.contains(&("code", code))
            })
            .map(|m| m.get_counter().get_value())
            .sum::<f64>()
    };
    assert_eq!(count("OK"), 2.0);
    assert_eq!(count("Unavailable"), 1.0);
}

#[tokio::test]
async fn the_refresh_task_ends_with_the_channel() {
    let (a, _b) = two_pods().await;
    let dns = FakeDns::default();
    dns.answer(&[a.addr]);
    let (channel, mut applied) =
        balanced_channel_with(&format!("http://user.test:{}", a.addr.port()), fast(), dns).unwrap();
    wait_for(&mut applied, keys(&[&a.addr.to_string()])).await;
    drop(channel);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while applied.changed().await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "the DNS refresh task outlived its channel");
}
