//! What a production rollout relies on from the datastores, against private
//! servers this test starts (never the shared local ones):
//!
//! - Postgres and Redis over TLS, with a CA the test makes (openssl CLI), and
//!   refusal of a server whose certificate does not verify;
//! - migrations serialized by an advisory lock, and `huddle migrate --check
//!   --wait`, the init container a release's pods wait in.
//!
//! Needs `initdb`/`postgres` (Debian's postgresql, found under
//! /usr/lib/postgresql/*/bin), `redis-server` built with TLS, and `openssl`.
//! Postgres refuses to run as root: as root the server runs as `postgres`
//! through `runuser`.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use diesel_async::RunQueryDsl;

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn free_port() -> R<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> R<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root.
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_bin(name: &str) -> R<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("{name} not found under /usr/lib/postgresql/*/bin").into())
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> R<Self> {
        let dir = std::env::temp_dir().join(format!(
            "huddle-deploy-{tag}-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1,
/// plus a second, unrelated CA (the "wrong" one).
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path, san: &str) -> R<Certs> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        run(Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ])
            .args(["-subj", &format!("/CN=huddle test {ca}"), "-days", "2"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
    }
    run(Command::new("openssl")
        .current_dir(dir)
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]))?;
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]))?;
    Ok(Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}

/// A private Postgres on a free port. With `certs`, it accepts TLS
/// connections only (`hostssl` is the sole TCP line in pg_hba.conf), so a
/// successful query proves the client spoke TLS.
struct Postgres {
    child: Child,
    port: u16,
    _dir: Dir,
}

impl Postgres {
    fn start(certs: Option<&Certs>) -> R<Self> {
        let dir = Dir::new("pg")?;
        let data = dir.0.join("data");
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0))?;
        }
        run(as_pg(&pg_bin("initdb")?)
            .args(["-A", "trust", "-U", "huddle", "-D"])
            .arg(&data))?;
        let line = if certs.is_some() { "hostssl" } else { "host" };
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{line} all all 127.0.0.1/32 trust\n"),
        )?;
        let port = free_port()?;
        let mut cmd = as_pg(&pg_bin("postgres")?);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(&dir.0);
        if let Some(c) = certs {
            // The server insists its key is private to it.
            let key = data.join("server.key");
            std::fs::copy(&c.key, &key)?;
            std::fs::copy(&c.cert, data.join("server.pem"))?;
            if is_root() {
                run(Command::new("chown").args(["postgres:postgres"]).arg(&key))?;
            }
            run(Command::new("chmod").arg("600").arg(&key))?;
            cmd.args([
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.pem",
                "-c",
                "ssl_key_file=server.key",
            ]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let pg = Self {
            child,
            port,
            _dir: dir,
        };
        let ready = pg_bin("pg_isready")?;
        let start = Instant::now();
        while !Command::new(&ready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()?
            .success()
        {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("private postgres did not start in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(pg)
    }

    fn url(&self, query: &str) -> String {
        format!("postgres://huddle@127.0.0.1:{}/postgres{query}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Redis {
    child: Child,
    port: u16,
    _dir: Dir,
}

impl Redis {
    fn start_tls(certs: &Certs) -> R<Self> {
        let dir = Dir::new("redis")?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .current_dir(&dir.0)
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(
                    "private redis-server --tls-port did not start in 10 s (built without TLS?)"
                        .into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn huddle(db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_huddle"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HUDDLE_DATABASE_URL", db_url)
        .env("HUDDLE_LOG", "warn");
    c
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

async fn session_uses_tls(url: &str) -> R<bool> {
    let mut conn = huddle_db::establish(url).await?;
    let rows: Vec<Ssl> =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .load(&mut conn)
            .await?;
    Ok(rows.iter().any(|r| r.ssl))
}

/// `verify-full` with the right CA connects (and the session is TLS: the
/// server has no plain-TCP pg_hba line); with another CA, or against a
/// certificate for another name, it is refused, while `verify-ca` accepts the
/// latter and `require` accepts anything; `disable` cannot get in at all.
///
/// Seen to fail: with `ChainOnly` forgiving every error (not only name
/// errors), "verify-ca accepted a certificate from an untrusted CA".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() -> R {
    let dir = Dir::new("pgcerts")?;
    let certs = make_certs(&dir.0, "DNS:localhost,IP:127.0.0.1")?;
    let pg = Postgres::start(Some(&certs))?;
    let ca = certs.ca.display();
    let other = certs.other_ca.display();

    assert!(session_uses_tls(&pg.url(&format!("?sslmode=verify-full&sslrootcert={ca}"))).await?);
    assert!(session_uses_tls(&pg.url("?sslmode=require")).await?);
    assert!(
        session_uses_tls(&pg.url("")).await?,
        "prefer (the default) takes TLS when offered"
    );

    let refused =
        huddle_db::establish(&pg.url(&format!("?sslmode=verify-full&sslrootcert={other}")))
            .await
            .err()
            .ok_or("verify-full accepted a certificate from an untrusted CA")?;
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    assert!(
        huddle_db::establish(&pg.url(&format!("?sslmode=verify-ca&sslrootcert={other}")))
            .await
            .is_err(),
        "verify-ca accepted a certificate from an untrusted CA"
    );
    // The system store does not hold the test CA.
    assert!(
        huddle_db::establish(&pg.url("?sslmode=verify-full"))
            .await
            .is_err()
    );
    assert!(
        huddle_db::establish(&pg.url("?sslmode=disable"))
            .await
            .is_err(),
        "the server takes TLS only; a plain session must not get in"
    );

    // The pool (what the services use) honours the URL too.
    let db = huddle_db::Database::connect(
        &pg.url(&format!("?sslmode=verify-full&sslrootcert={ca}")),
        2,
    )?;
    db.ping().await?;

    // A server whose certificate names another host.
    drop(pg);
    let dir2 = Dir::new("pgcerts2")?;
    let certs2 = make_certs(&dir2.0, "DNS:db.elsewhere.example")?;
    let pg = Postgres::start(Some(&certs2))?;
    let ca2 = certs2.ca.display();
    let wrong_name =
        huddle_db::establish(&pg.url(&format!("?sslmode=verify-full&sslrootcert={ca2}")))
            .await
            .err()
            .ok_or("verify-full accepted a certificate for another host name")?;
    assert!(
        wrong_name.to_string().contains("not valid for name"),
        "{wrong_name}"
    );
    assert!(session_uses_tls(&pg.url(&format!("?sslmode=verify-ca&sslrootcert={ca2}"))).await?);

    // And the binary, end to end: `migrate` over verify-full.
    let out = huddle(&pg.url(&format!("?sslmode=verify-full&sslrootcert={ca2}")))
        .arg("migrate")
        .output()?;
    assert!(
        !out.status.success(),
        "migrate went through a name mismatch"
    );
    let out =
        run(huddle(&pg.url(&format!("?sslmode=verify-ca&sslrootcert={ca2}"))).arg("migrate"))?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("migration(s) applied"));
    Ok(())
}

/// `rediss://` through the binary's cache client: trusted CA (given to
/// rustls-native-certs through SSL_CERT_FILE) → PONG; the system store, or
/// another CA → refused.
///
/// Seen to fail: with the redis crate's `tls-rustls`/`tokio-rustls-comp`
/// features removed from Cargo.toml, the first PONG assertion failed ("can't
/// connect with TLS, the feature is not enabled").
#[test]
fn redis_over_tls_verifies_the_server() -> R {
    let dir = Dir::new("rediscerts")?;
    let certs = make_certs(&dir.0, "DNS:localhost,IP:127.0.0.1")?;
    let redis = Redis::start_tls(&certs)?;
    let ping = |url: String, ca: Option<&Path>| -> R<Output> {
        let mut c = huddle("postgres://unused@127.0.0.1:1");
        c.env("HUDDLE_REDIS_URL", url)
            .env("HUDDLE_REDIS_TIMEOUT_MS", "3000")
            .args(["cache", "ping"]);
        if let Some(ca) = ca {
            c.env("SSL_CERT_FILE", ca);
        }
        Ok(c.output()?)
    };
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("rediss://{host}:{}", redis.port);
        let ok = ping(url.clone(), Some(&certs.ca))?;
        assert!(
            ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("PONG"),
            "{host}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            !ping(url.clone(), Some(&certs.other_ca))?.status.success(),
            "{host}: wrong CA accepted"
        );
        assert!(
            !ping(url, None)?.status.success(),
            "{host}: untrusted CA accepted"
        );
    }
    // Plain redis:// to a TLS port gets nothing back.
    assert!(
        !ping(format!("redis://127.0.0.1:{}", redis.port), Some(&certs.ca))?
            .status
            .success()
    );
    Ok(())
}

fn spawn_migrate(url: &str, extra: &[&str]) -> R<Child> {
    Ok(huddle(url)
        .arg("migrate")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn applied_counts(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Two `huddle migrate` at once against one fresh server: both exit 0, and
/// each database's migrations were applied by exactly one of them. A third
/// runner blocked by a held advisory lock waits (still running after 2 s,
/// `migrate --check` still failing) and finishes once the lock is released;
/// `migrate --check --wait`, started before any migration, returns 0 once the
/// schema is current.
///
/// Seen to fail: with the `pg_advisory_lock` in `run_migrations` replaced by
/// a plain `SELECT`, "a runner did not wait for the lock".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_serialize_and_check_waits() -> R {
    let pg = Postgres::start(None)?;
    let server = format!("postgres://huddle@127.0.0.1:{}", pg.port);

    let check = run_fails(huddle(&server).args(["migrate", "--check"]))?;
    assert!(
        check.contains("pending") || check.contains("does not exist"),
        "{check}"
    );
    let waiter = spawn_migrate(&server, &["--check", "--wait", "120"])?;

    // Hold the lock on the user database, as a slow runner would.
    huddle_db::create_database_if_missing(&server, user_service::DATABASE_NAME).await?;
    let user_url = huddle_db::database_url(&server, user_service::DATABASE_NAME)?;
    let mut holder = huddle_db::establish(&user_url).await?;
    diesel::sql_query(format!(
        "SELECT pg_advisory_lock({})",
        huddle_db::MIGRATION_LOCK_KEY
    ))
    .execute(&mut holder)
    .await?;
    let total = huddle_db::pending_migrations(&user_url, &user_service::MIGRATIONS).await?;
    assert!(total > 0);
    let mut a = spawn_migrate(&server, &[])?;
    let mut b = spawn_migrate(&server, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        a.try_wait()?.is_none() && b.try_wait()?.is_none(),
        "a runner did not wait for the lock"
    );
    assert_eq!(
        huddle_db::pending_migrations(&user_url, &user_service::MIGRATIONS).await?,
        total,
        "nothing may migrate while the lock is held"
    );
    drop(holder);

    let (a, b) = (a.wait_with_output()?, b.wait_with_output()?);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (ca, cb) = (
        applied_counts(&String::from_utf8_lossy(&a.stdout)),
        applied_counts(&String::from_utf8_lossy(&b.stdout)),
    );
    // One line per service database `huddle migrate` migrates: user,
    // meeting, recording, chat.
    let databases = 4;
    assert_eq!(
        (ca.len(), cb.len()),
        (databases, databases),
        "{ca:?} {cb:?}"
    );
    for i in 0..databases {
        assert!(
            (ca[i] > 0) != (cb[i] > 0),
            "database {i}: exactly one runner applies the migrations ({ca:?} {cb:?})"
        );
    }
    assert_eq!(
        huddle_db::pending_migrations(&user_url, &user_service::MIGRATIONS).await?,
        0
    );

    let waited = waiter.wait_with_output()?;
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    run(huddle(&server).args(["migrate", "--check"]))?;
    Ok(())
}

/// Runs a command that must fail; returns its stderr.
fn run_fails(cmd: &mut Command) -> R<String> {
    let out = cmd.output()?;
    if out.status.success() {
        return Err(format!("{cmd:?} succeeded").into());
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn health(addr: &str) -> R<i32> {
    health_of(addr, "").await
}

async fn health_of(addr: &str, service: &str) -> R<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().status)
}

/// `huddle user` started against a database that exists but lacks its
/// migrations answers its gRPC health check NOT_SERVING (so its readiness
/// probe keeps it out of the Service), and SERVING within seconds of
/// `huddle migrate`; meanwhile the `liveness` entry (the liveness probe's)
/// is SERVING.
///
/// Seen to fail: with the services calling `Readiness::start` (database
/// ping only) instead of `start_with_schema`, the first status was SERVING;
/// without the `liveness` entry, its check answered NotFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_not_serving_while_its_schema_is_behind() -> R {
    use tonic_health::ServingStatus;
    let pg = Postgres::start(None)?;
    let server = format!("postgres://huddle@127.0.0.1:{}", pg.port);
    huddle_db::create_database_if_missing(&server, user_service::DATABASE_NAME).await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let _user = KillOnDrop(
        huddle(&server)
            .env("HUDDLE_USER_ADDR", &addr)
            .env("HUDDLE_METRICS_ADDR", format!("127.0.0.1:{}", free_port()?))
            .env("HUDDLE_REDIS_URL", "redis://127.0.0.1:1")
            .arg("user")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    async {
        let start = Instant::now();
        let first = loop {
            match health(&addr).await {
                Ok(s) => break s,
                Err(e) if start.elapsed() > Duration::from_secs(20) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert_eq!(
            first,
            ServingStatus::NotServing as i32,
            "ready on an unmigrated database"
        );
        // The liveness probe's entry stays SERVING: not ready, but not to be restarted.
        assert_eq!(
            health_of(&addr, huddle_serve::health::LIVENESS_SERVICE).await?,
            ServingStatus::Serving as i32
        );
        run(huddle(&server).arg("migrate"))?;
        let start = Instant::now();
        while health(&addr).await? != ServingStatus::Serving as i32 {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("still NOT_SERVING 10 s after the migration".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await
}

/// Kills the child however the test ends (a failed assertion included).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
