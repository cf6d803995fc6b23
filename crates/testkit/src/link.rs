//! A replication link a test can stall: a loopback forwarder whose
//! [`FrozenLink::freeze`] stops passing bytes while keeping both sockets
//! open, as a congested or half-dead network does. The primary still counts
//! its replica as connected (until `repl-timeout`), but nothing reaches the
//! replica, so a later promotion loses what was sent meanwhile.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    task::JoinHandle,
};

pub struct FrozenLink {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
}

impl FrozenLink {
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, flag.clone()),
                        pump(server_read, client_write, flag),
                    );
                });
            }
        });
        Ok(Self {
            addr,
            frozen,
            acceptor,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Bytes read from now on are held, not forwarded.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for FrozenLink {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
