//! A TCP proxy a test can cut, to take one dependency of one service down
//! (its Postgres, a peer service) without disturbing anyone else, and bring
//! it back.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

pub struct TcpProxy {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    up: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
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
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn(accept(
            listener,
            target.clone(),
            Flags {
                up: up.clone(),
                silent: silent.clone(),
            },
            connections.clone(),
        ));
        Ok(Self {
            addr,
            target,
            up,
            silent,
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
        let task = tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(target).await {
                let mut client = client;
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }
}
