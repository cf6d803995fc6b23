//! Configuration: every setting is an environment variable with a local
//! default (so `huddle all` needs none), parsed and validated once at start,
//! then passed down as typed values.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use huddle_common::telemetry::LogFormat;

/// Used only by `huddle all` and `huddle token` when HUDDLE_JWT_SECRET is
/// unset, so a fresh checkout runs with no setup. `huddle gateway` refuses it.
pub const DEV_JWT_SECRET: &str = "huddle-dev-secret-do-not-use-in-production";

#[derive(Parser)]
#[command(
    name = "huddle",
    version,
    about = "Huddle: video-meeting backend with a Redis cache layer"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Every service and the gateway in one process (the local default).
    All(AllArgs),
    /// The HTTP API gateway alone.
    Gateway,
    /// The user service alone.
    User,
    /// The meeting service alone.
    Meeting,
    /// Create the databases if missing and run pending migrations.
    Migrate(MigrateArgs),
    /// Insert demo data (idempotent).
    Seed,
    /// Mint a JWT for local use.
    Token(TokenArgs),
    /// Inspect the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Args)]
pub struct AllArgs {
    /// Print the URL, a demo token and a working curl line once serving.
    #[arg(long)]
    pub banner: bool,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Change nothing: exit non-zero while any service's database lacks a
    /// migration this binary embeds (an init container before the services).
    #[arg(long)]
    pub check: bool,
    /// With --check: poll every 2 s for up to this many seconds before failing.
    #[arg(long, default_value_t = 0, requires = "check",
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub wait: u64,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct TokenArgs {
    /// The user id (uuid) the token is for.
    #[arg(long, group = "who")]
    pub user: Option<uuid::Uuid>,
    /// An admin token instead.
    #[arg(long, group = "who")]
    pub admin: bool,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Round trip to Redis.
    Ping,
    /// Keys under the prefix matching a glob on the key path (SCAN, never KEYS).
    Keys {
        pattern: String,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The stored value and remaining TTL of one key path, e.g. `user:<id>`.
    Get { key: String },
    /// Hit ratio per key name, from a running process's /metrics, plus Redis stats.
    Stats {
        /// Defaults to http://HUDDLE_HTTP_ADDR/metrics.
        #[arg(long)]
        metrics_url: Option<String>,
    },
    /// Delete every key under the prefix (only when HUDDLE_ENV=dev).
    Flush {
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Clone)]
pub struct Global {
    /// Postgres server URL; each service uses its own database on it.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_DATABASE_URL",
        default_value = "postgres://huddle:huddle@127.0.0.1:5432"
    )]
    pub database_url: String,
    #[arg(long, global = true, env = "HUDDLE_DB_POOL_SIZE", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=200))]
    pub db_pool_size: u16,
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Redis Cluster seed nodes, comma-separated (`redis://host:port,…`);
    /// when set, the cache uses the cluster and HUDDLE_REDIS_URL is unused.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REDIS_CLUSTER_NODES",
        value_delimiter = ','
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// Prefix of every cache key; carries the format version.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_CACHE_PREFIX",
        default_value = "huddle:v1:"
    )]
    pub cache_prefix: String,
    /// Upper bound on one Redis call before the request goes on without it.
    #[arg(long, global = true, env = "HUDDLE_REDIS_TIMEOUT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
    /// Where the gateway listens for HTTP.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// The user service: where `huddle user` listens, and where the gateway
    /// dials it (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        env = "HUDDLE_USER_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub user_addr: String,
    /// The meeting service: where `huddle meeting` listens, and where the
    /// gateway dials it (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        env = "HUDDLE_MEETING_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub meeting_addr: String,
    /// Where a standalone service process serves Prometheus metrics.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,
    #[arg(long, global = true, env = "HUDDLE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// dev, test or prod; dev allows `huddle cache flush`.
    #[arg(long, global = true, env = "HUDDLE_ENV", default_value = "dev")]
    pub env: String,
    /// Per gRPC call deadline at the gateway, in ms.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REQUEST_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub request_timeout_ms: u64,
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
}

impl Global {
    pub fn cache_config(&self) -> cache_core::CacheConfig {
        cache_core::CacheConfig {
            redis_url: self.redis_url.clone(),
            cluster_nodes: self
                .redis_cluster_nodes
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            prefix: self.cache_prefix.clone(),
            op_timeout: Duration::from_millis(self.redis_timeout_ms),
            ..cache_core::CacheConfig::default()
        }
    }

    /// The secret, or the dev one (with a warning) when `allow_dev`.
    pub fn jwt_secret(&self, allow_dev: bool) -> Result<String, String> {
        match &self.jwt_secret {
            Some(s) if s.len() >= 16 => Ok(s.clone()),
            Some(_) => Err("HUDDLE_JWT_SECRET must be at least 16 characters".to_owned()),
            None if allow_dev => {
                tracing::warn!("HUDDLE_JWT_SECRET is not set; using the built-in dev secret");
                Ok(DEV_JWT_SECRET.to_owned())
            }
            None => Err(
                "HUDDLE_JWT_SECRET is required (the gateway never runs with the dev secret)"
                    .to_owned(),
            ),
        }
    }

    pub fn user_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.user_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_USER_ADDR {addr:?} must be ip:port where the user service listens (e.g. 0.0.0.0:50051)")
        })
    }

    pub fn meeting_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.meeting_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_MEETING_ADDR {addr:?} must be ip:port where the meeting service listens (e.g. 0.0.0.0:50052)")
        })
    }
}

/// `30s`, `15m`, `1h`, `7d`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in {raw:?} (use s, m, h or d)"
            ));
        }
    };
    if secs == 0 {
        return Err("duration must be positive".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn defaults_need_no_environment() {
        let cli = Cli::try_parse_from(["huddle", "all"]).unwrap();
        assert_eq!(cli.global.http_addr.port(), 8080);
        assert_eq!(cli.global.cache_prefix, "huddle:v1:");
        assert_eq!(cli.global.user_listen_addr().unwrap().port(), 50051);
        assert_eq!(cli.global.meeting_listen_addr().unwrap().port(), 50052);
    }
}
