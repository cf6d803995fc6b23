//! Test fixtures that need real processes: a private `redis-server` a test
//! may stop, restart or pause without disturbing other tests, and the Redis
//! Cluster that `make test` starts (scripts/redis-cluster.sh); throwaway
//! databases cloned from a migrated template (`database`).

pub mod database;
pub mod proxy;

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

/// The cluster seed nodes `make test` exports. Running the cluster suite
/// without them is a setup error, not a pass.
pub fn cluster_nodes() -> Vec<String> {
    let nodes = std::env::var("HUDDLE_TEST_REDIS_CLUSTER_NODES").unwrap_or_default();
    let nodes: Vec<String> = nodes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !nodes.is_empty(),
        "HUDDLE_TEST_REDIS_CLUSTER_NODES is not set: run the suite with `make test`, \
         which starts a local 3-master cluster (scripts/redis-cluster.sh)"
    );
    nodes
}

/// A `redis-server` of this test's own on a free loopback port, killed on drop.
pub struct TestRedis {
    port: u16,
    child: Option<Child>,
}

impl TestRedis {
    pub fn start() -> Self {
        let port = free_port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_until(|| TcpStream::connect(("127.0.0.1", self.port)).is_err());
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it installed?): {e}"));
        self.child = Some(child);
        assert!(
            wait_until(|| self
                .command(&["PING"])
                .is_some_and(|out| out.contains("PONG"))),
            "redis-server on port {} did not come up",
            self.port
        );
    }

    /// `CLIENT PAUSE ms ALL`: the server stays up but answers nobody.
    pub fn pause(&self, duration: Duration) {
        let ms = duration.as_millis().to_string();
        let out = self.command(&["CLIENT", "PAUSE", &ms, "ALL"]);
        assert_eq!(
            out.as_deref().map(str::trim),
            Some("OK"),
            "CLIENT PAUSE failed"
        );
    }

    /// Makes the server refuse every write while still answering reads (as
    /// a primary that lost its replicas does: `min-replicas-to-write 1`).
    /// Unlike a pause, a refused DEL is gone, not queued.
    pub fn refuse_writes(&self, refuse: bool) {
        let n = if refuse { "1" } else { "0" };
        let out = self.command(&["CONFIG", "SET", "min-replicas-to-write", n]);
        assert_eq!(
            out.as_deref().map(str::trim),
            Some("OK"),
            "CONFIG SET failed"
        );
    }

    pub fn unpause(&self) {
        self.command(&["CLIENT", "UNPAUSE"]);
    }

    /// Runs a command with `redis-cli`; `None` if it could not connect.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.contains("Could not connect")).then_some(text)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    false
}
