//! A TCP proxy a test can cut, to take one dependency of one service down
//! (its Postgres, a peer service) without disturbing anyone else, and bring
//! it back; or slow down; or freeze, as a half-open socket does.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

pub struct TcpProxy {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    up: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    delay_us: Arc<AtomicU64>,
    /// Each open connection's freeze switch.
    links: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `target` while up.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let proxy = Self::unpointed().await?;
        proxy.point_at(target);
        Ok(proxy)
    }

    /// A proxy whose target is set later ([`Self::point_at`]), for a
    /// server that binds after its clients are configured; until then
    /// connections are closed.
    pub async fn unpointed() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let silent = Arc::new(AtomicBool::new(false));
        let delay_us = Arc::new(AtomicU64::new(0));
        let links: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn(accept(
            listener,
            target.clone(),
            Flags {
                up: up.clone(),
                silent: silent.clone(),
                delay_us: delay_us.clone(),
                links: links.clone(),
            },
            connections.clone(),
        ));
        Ok(Self {
            addr,
            target,
            up,
            silent,
            delay_us,
            links,
            connections,
            acceptor,
        })
    }

    pub fn point_at(&self, target: SocketAddr) {
        *self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(target);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Silent: open connections are cut and new ones are accepted but never
    /// answered, as with a hung peer, so callers wait for their deadline.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
        if silent {
            self.cut();
        }
    }

    /// Down: open connections are cut and new ones closed at once, as when
    /// the target's host goes away. Up: connections go through again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut();
        }
    }

    /// Every chunk forwarded (either way, on every connection) waits
    /// `delay` first: a slow link on which nothing fails.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(us, Ordering::SeqCst);
    }

    /// The connections open now stop forwarding, either way, but stay
    /// open: their peers see silence, not a close (a half-open socket, a
    /// hung middlebox). Connections made later are not frozen.
    pub fn freeze(&self) {
        for link in lock(&self.links).iter() {
            link.store(true, Ordering::SeqCst);
        }
    }

    /// The peer hangs, as a failed-over database host that vanished
    /// without a reset does: open connections freeze and new ones are
    /// accepted but never answered. [`Self::thaw`] and
    /// `set_silent(false)` undo it.
    pub fn hang(&self) {
        self.silent.store(true, Ordering::SeqCst);
        self.freeze();
    }

    /// Frozen connections forward again.
    pub fn thaw(&self) {
        for link in lock(&self.links).drain(..) {
            link.store(false, Ordering::SeqCst);
        }
    }

    fn cut(&self) {
        {
            let mut open = self
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for task in open.drain(..) {
                task.abort();
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.acceptor.abort();
    }
}

struct Flags {
    up: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    delay_us: Arc<AtomicU64>,
    links: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One direction of a connection: forwards chunk by chunk, honouring the
/// delay and the connection's freeze.
async fn pump<R, W>(mut from: R, mut to: W, delay_us: Arc<AtomicU64>, frozen: Arc<AtomicBool>)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn accept(
    listener: TcpListener,
    target: Arc<Mutex<Option<SocketAddr>>>,
    flags: Flags,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let target = *target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(target) = target.filter(|_| flags.up.load(Ordering::SeqCst)) else {
            drop(client);
            continue;
        };
        if flags.silent.load(Ordering::SeqCst) {
            // Hold the connection open and say nothing until cut.
            let task = tokio::spawn(async move {
                let _held = client;
                std::future::pending::<()>().await;
            });
            connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(task);
            continue;
        }
        let frozen = Arc::new(AtomicBool::new(false));
        {
            let mut links = lock(&flags.links);
            links.retain(|l| Arc::strong_count(l) > 1);
            links.push(frozen.clone());
        }
        let delay = flags.delay_us.clone();
        let task = tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pump(client_read, server_write, delay.clone(), frozen.clone()),
                    pump(server_read, client_write, delay, frozen),
                );
            }
        });
        connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }
}
