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
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn(accept(
            listener,
            target.clone(),
            up.clone(),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            target,
            up,
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

    /// Down: open connections are cut and new ones closed at once, as when
    /// the target's host goes away. Up: connections go through again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
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

async fn accept(
    listener: TcpListener,
    target: Arc<Mutex<Option<SocketAddr>>>,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let target = *target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(target) = target.filter(|_| up.load(Ordering::SeqCst)) else {
            drop(client);
            continue;
        };
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
