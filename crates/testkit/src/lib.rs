//! Test fixtures that need real processes: a private `redis-server` a test
//! may stop, restart or pause without disturbing other tests, and the Redis
//! Cluster that `make test` starts (scripts/redis-cluster.sh); throwaway
//! databases cloned from a migrated template (`database`).

pub mod database;
pub mod link;
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
    extra: Vec<String>,
}

/// How long a server gets to come up or go away.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

impl TestRedis {
    /// Starts a server on a port nobody uses. The port is found free and
    /// then released before the server binds it, so another process may
    /// take it in between: then the server fails to bind (or another one
    /// answers), and we try again on a new port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`TestRedis::start`] with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let mut redis = Self {
                port: free_port(),
                child: None,
                extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            };
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => last = e,
            }
        }
        panic!("could not start a private redis-server: {last}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would: nothing is saved) and waits until
    /// the port no longer answers.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            wait_until(|| TcpStream::connect(("127.0.0.1", self.port)).is_err()),
            "port {} still answers {PROCESS_TIMEOUT:?} after the server was killed",
            self.port
        );
    }

    /// Starts it again, empty, on the same port. Panics if the port was
    /// taken meanwhile (clients hold its URL, so it cannot move).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("restart on port {}: {e}", self.port);
        }
    }

    /// Spawns the server and waits until *it* answers: a PONG from another
    /// test's server that took the port would not do, so the answering
    /// server's pid must be our child's.
    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-server")
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
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it installed?): {e}"));
        let pid = child.id().to_string();
        let mut exited = false;
        let ours = wait_until(|| {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                return true;
            }
            self.command(&["INFO", "server"])
                .is_some_and(|info| info_field(&info, "process_id") == Some(pid.as_str()))
        });
        if ours && !exited {
            self.child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(if exited {
            format!("redis-server exited at start (port {} taken?)", self.port)
        } else {
            format!("redis-server on port {} did not come up", self.port)
        })
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing answers —
    /// a hung server, unlike `pause`, which Redis itself implements.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            panic!("kill {signal}: the server is not running");
        };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill {signal} {pid}: {e}"));
        assert!(status.success(), "kill {signal} {pid}");
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

    /// A replica of the server on `primary_port` (a [`link::FrozenLink`]'s
    /// port, to stall it), returned once its link is up and its first sync
    /// done.
    pub fn replica_of(primary_port: u16) -> Self {
        let port = primary_port.to_string();
        // A replica loads its first sync from disk by default: keep the file
        // out of the working tree.
        let dir = std::env::temp_dir();
        let dir = dir.to_string_lossy();
        let replica = Self::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--repl-diskless-load",
            "on-empty-db",
            "--dir",
            &dir,
        ]);
        assert!(
            wait_until(|| replica.info("master_link_status").as_deref() == Some("up")),
            "replica of port {primary_port} never synced"
        );
        replica
    }

    /// `REPLICAOF NO ONE`: this replica becomes a primary, with what it has.
    pub fn promote(&self) {
        let out = self.command(&["REPLICAOF", "NO", "ONE"]);
        assert_eq!(
            out.as_deref().map(str::trim),
            Some("OK"),
            "promotion failed"
        );
    }

    /// One field of `INFO` (e.g. `connected_slaves`, `master_replid`).
    pub fn info(&self, field: &str) -> Option<String> {
        let info = self.command(&["INFO"])?;
        info_field(&info, field).map(str::to_owned)
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

/// A Redis Sentinel of this test's own (`redis-server --sentinel`), watching
/// one primary under `name` with short timeouts; killed on drop.
pub struct TestSentinel {
    port: u16,
    name: String,
    child: Child,
    dir: std::path::PathBuf,
}

impl TestSentinel {
    pub fn start(name: &str, primary_port: u16) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("huddle-sentinel-{port}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {name} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n",
            dir = dir.display()
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        // Debian's redis-sentinel, else the same binary in sentinel mode.
        let on_path = |bin: &str| Command::new(bin).arg("--version").output().is_ok();
        let mut command = Command::new(if on_path("redis-sentinel") {
            "redis-sentinel"
        } else {
            "redis-server"
        });
        // The config file comes first; `--sentinel` is harmless to both.
        let child = command
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server --sentinel: {e}"));
        let sentinel = Self {
            port,
            name: name.to_owned(),
            child,
            dir,
        };
        assert!(
            wait_until(|| sentinel.primary_port() == Some(primary_port)),
            "sentinel on port {port} never answered"
        );
        sentinel
    }

    /// `host:port`, as `HUDDLE_REDIS_SENTINELS` lists it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The primary's port as the sentinel names it now.
    pub fn primary_port(&self) -> Option<u16> {
        let out = self.cli(&["SENTINEL", "get-master-addr-by-name", &self.name])?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL FAILOVER`, retried until accepted (a sentinel refuses while
    /// it has no fresh view of a replica: it reads their INFO every 10 s),
    /// then waits until it names a primary other than `old_port`.
    pub fn fail_over(&self, old_port: u16) {
        let accepted = wait_long(Duration::from_secs(20), || {
            self.cli(&["SENTINEL", "FAILOVER", &self.name])
                .is_some_and(|out| out.trim() == "OK")
        });
        assert!(accepted, "sentinel never accepted the failover");
        assert!(
            wait_long(Duration::from_secs(10), || self
                .primary_port()
                .is_some_and(|p| p != old_port)),
            "sentinel never switched the primary"
        );
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Polls `ready` until it holds or [`PROCESS_TIMEOUT`] passes.
fn wait_until(ready: impl FnMut() -> bool) -> bool {
    wait_long(PROCESS_TIMEOUT, ready)
}

fn wait_long(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Polls `check` every 50 ms until it holds or `limit` has passed (then
/// checks once more): for outcomes that take time (a relay, a cascade, a
/// breaker), never a fixed sleep.
pub async fn eventually(limit: std::time::Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check().await
}
