//! Configuration: every setting is an environment variable with a local
//! default (so `huddle all` needs none), parsed and validated once at start,
//! then passed down as typed values.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use huddle_common::telemetry::LogFormat;

/// Used only by `huddle all` and `huddle token` when HUDDLE_JWT_SECRET is
/// unset and HUDDLE_ENV is `dev` (its default), so a fresh checkout runs
/// with no setup. It is public: outside `dev` every command refuses it, even
/// when passed explicitly, and `huddle gateway` never falls back to it.
pub const DEV_JWT_SECRET: &str = "huddle-dev-secret-do-not-use-in-production";

/// HS256 keys shorter than the hash output (32 bytes) weaken the MAC
/// (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Upper bound of the gateway's per-call deadline.
const MAX_REQUEST_TIMEOUT_MS: u64 = 300_000;
/// Upper bound of a minted token's lifetime.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 86_400);

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
    /// The recording service alone (needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET).
    Recording,
    /// The chat service alone.
    Chat,
    /// Create the databases if missing and run pending migrations.
    Migrate(MigrateArgs),
    /// Insert demo data (idempotent).
    Seed,
    /// Mint a JWT for local use.
    Token(TokenArgs),
    /// Inspect the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Sign and post a LiveKit egress webhook to the gateway, as LiveKit
    /// would (local development).
    LivekitWebhook(crate::livekit_cmd::LivekitWebhookArgs),
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

/// Exactly one of `--user`/`--admin`; `--ttl` with either. (A struct-level
/// `#[group]` would put `--ttl` in the one-of group too.)
#[derive(Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("who").required(true).multiple(false))]
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
    /// Prefixes of the other version during a rolling update that changes
    /// HUDDLE_CACHE_PREFIX, comma-separated: every invalidation is applied
    /// under them too, so both versions' writes reach both versions' keys.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_CACHE_PREVIOUS_PREFIXES",
        value_delimiter = ','
    )]
    pub cache_previous_prefixes: Vec<String>,
    /// Redis connections per process (waiting for one never opens the
    /// circuit breaker).
    #[arg(long, global = true, env = "HUDDLE_REDIS_POOL_SIZE", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub redis_pool_size: u16,
    /// Upper bound on one Redis call before the request goes on without it.
    #[arg(long, global = true, env = "HUDDLE_REDIS_TIMEOUT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
    /// Replicas that must acknowledge an invalidation (`WAIT`) before it
    /// counts as applied: `0` (off), a number (a primary with fewer fails
    /// every apply: rows kept, reads held), or `auto` (those the primary
    /// reports connected; costs nothing on a standalone Redis).
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REDIS_WAIT_REPLICAS",
        default_value = "auto"
    )]
    pub redis_wait_replicas: cache_core::WaitReplicas,
    /// How long one `WAIT` may take before its shortfall fails the apply.
    #[arg(long, global = true, env = "HUDDLE_REDIS_WAIT_TIMEOUT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_wait_timeout_ms: u64,
    /// Redis Sentinels, comma-separated `host:port`; when set, the cache
    /// asks them for the primary of HUDDLE_REDIS_SENTINEL_MASTER and
    /// HUDDLE_REDIS_URL is unused by the cache.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REDIS_SENTINELS",
        value_delimiter = ','
    )]
    pub redis_sentinels: Vec<String>,
    #[arg(
        long,
        global = true,
        env = "HUDDLE_REDIS_SENTINEL_MASTER",
        default_value = "huddle"
    )]
    pub redis_sentinel_master: String,
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
    /// The recording service: where `huddle recording` listens, and where
    /// the gateway and the meeting service dial it (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        env = "HUDDLE_RECORDING_ADDR",
        default_value = "127.0.0.1:50054"
    )]
    pub recording_addr: String,
    /// The API key LiveKit signs webhooks with (the token's `iss`).
    #[arg(long, global = true, env = "LIVEKIT_API_KEY")]
    pub livekit_api_key: Option<String>,
    #[arg(
        long,
        global = true,
        env = "LIVEKIT_API_SECRET",
        hide_env_values = true
    )]
    pub livekit_api_secret: Option<String>,
    /// LiveKit's URL (`wss://…`, or `ws://` locally), given to clients with
    /// each room token and dialled by the recording service for the server
    /// APIs. Unset: no room tokens or recording control (503), except that
    /// `huddle all` in dev starts its LiveKit stand-in.
    #[arg(long, global = true, env = "LIVEKIT_URL")]
    pub livekit_url: Option<String>,
    /// Where the recording service calls LiveKit's server API (egress,
    /// room listing): plain HTTP in the cluster, e.g.
    /// http://livekit.livekit:7880. Default: LIVEKIT_URL.
    #[arg(long, global = true, env = "LIVEKIT_API_URL")]
    pub livekit_api_url: Option<String>,
    /// Lifetime of a LiveKit room token in seconds (60 to 21600 = 6 h).
    #[arg(long, global = true, env = "HUDDLE_MEDIA_TOKEN_TTL_SECS", default_value_t = 21600,
          value_parser = clap::value_parser!(u64).range(60..=21600))]
    pub media_token_ttl_secs: u64,
    /// Where LiveKit's egress writes a recording: the file output's path
    /// template (LiveKit's `{room_name}`, `{time}`); the storage (bucket or
    /// volume) is the egress service's own configuration.
    #[arg(long, global = true, env = "HUDDLE_RECORDING_FILEPATH",
          default_value = recording_service::media::DEFAULT_RECORDING_FILEPATH)]
    pub recording_filepath: String,
    /// Where a standalone service process serves Prometheus metrics.
    /// The chat service: where `huddle chat` listens, and where the gateway
    /// and the meeting service (deletion cascade) dial it.
    #[arg(
        long,
        global = true,
        env = "HUDDLE_CHAT_ADDR",
        default_value = "127.0.0.1:50053"
    )]
    pub chat_addr: String,
    /// How often a chat stream reads Postgres without being woken: the
    /// longest a lost wake-up can delay a message.
    #[arg(long, global = true, env = "HUDDLE_CHAT_STREAM_POLL_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=15_000))]
    pub chat_stream_poll_ms: u64,
    /// Messages a chat stream subscriber may fall behind before it is cut
    /// off (it resumes with Last-Event-ID).
    #[arg(long, global = true, env = "HUDDLE_CHAT_STREAM_BUFFER", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub chat_stream_buffer: u64,
    /// Open chat streams per chat-service process.
    #[arg(long, global = true, env = "HUDDLE_CHAT_STREAM_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub chat_stream_max: u64,
    /// Interval of the SSE heartbeat comment the gateway sends on a chat
    /// stream (at most 15 s, as SPEC §3 promises).
    #[arg(long, global = true, env = "HUDDLE_SSE_HEARTBEAT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=15_000))]
    pub sse_heartbeat_ms: u64,
    /// Open chat streams per gateway process; past it, 429.
    #[arg(long, global = true, env = "HUDDLE_SSE_MAX_STREAMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub sse_max_streams: u64,
    /// Open chat streams per user and gateway process; past it, 429.
    #[arg(long, global = true, env = "HUDDLE_SSE_MAX_STREAMS_PER_USER", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub sse_max_streams_per_user: u64,
    #[arg(
        long,
        global = true,
        env = "HUDDLE_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,
    #[arg(long, global = true, env = "HUDDLE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// dev, test or prod. Only dev allows `huddle cache flush` and the
    /// built-in dev JWT secret; the default is dev so that `make run` needs
    /// no setup, and the manifests set prod.
    #[arg(long, global = true, env = "HUDDLE_ENV", default_value = "dev",
          value_parser = ["dev", "test", "prod"])]
    pub env: String,
    /// `false`: every read goes to Postgres, nothing is cached and the
    /// gateway coalesces no reads (for `make bench`'s uncached column and
    /// diagnosis; never in production).
    #[arg(long, global = true, env = "HUDDLE_CACHE_READS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub cache_reads: bool,
    /// Serve Swagger UI at /api/docs/ (the prod overlay turns it off; the
    /// OpenAPI document at /api/openapi.json is served either way).
    #[arg(long, global = true, env = "HUDDLE_SWAGGER_UI", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub swagger_ui: bool,
    /// Per gRPC call deadline at the gateway, in ms (1 to 300000).
    #[arg(long, global = true, env = "HUDDLE_REQUEST_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_REQUEST_TIMEOUT_MS))]
    pub request_timeout_ms: u64,
    /// Meeting creations per user: COUNT/WINDOW, e.g. 30/60s (window 1s to 24h).
    #[arg(long, global = true, env = "HUDDLE_RATE_LIMIT_MEETING_CREATE",
          default_value = "30/60s", value_parser = gateway::ratelimit::Limit::parse)]
    pub rate_limit_meeting_create: gateway::ratelimit::Limit,
    /// Meeting joins per user, e.g. 30/60s.
    #[arg(long, global = true, env = "HUDDLE_RATE_LIMIT_MEETING_JOIN",
          default_value = "30/60s", value_parser = gateway::ratelimit::Limit::parse)]
    pub rate_limit_meeting_join: gateway::ratelimit::Limit,
    /// LiveKit room tokens (`POST /api/meetings/{id}/media-token`) per user.
    #[arg(long, global = true, env = "HUDDLE_RATE_LIMIT_MEDIA_TOKEN",
          default_value = "30/60s", value_parser = gateway::ratelimit::Limit::parse)]
    pub rate_limit_media_token: gateway::ratelimit::Limit,
    /// Chat posts per user and meeting, e.g. 20/10s (once chat exists).
    #[arg(long, global = true, env = "HUDDLE_RATE_LIMIT_CHAT_POST",
          default_value = "20/10s", value_parser = gateway::ratelimit::Limit::parse)]
    pub rate_limit_chat_post: gateway::ratelimit::Limit,
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
            previous_prefixes: self
                .cache_previous_prefixes
                .iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            pool_size: usize::from(self.redis_pool_size),
            op_timeout: Duration::from_millis(self.redis_timeout_ms),
            reads: self.cache_reads,
            wait_replicas: self.redis_wait_replicas,
            wait_timeout: Duration::from_millis(self.redis_wait_timeout_ms),
            sentinels: self
                .redis_sentinels
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            sentinel_master: self.redis_sentinel_master.clone(),
            ..cache_core::CacheConfig::default()
        }
    }

    /// The gateway's rate limits, counted in the cache's Redis under the
    /// cache prefix.
    pub fn rate_limit_config(&self) -> gateway::ratelimit::RateLimitConfig {
        let cache = self.cache_config();
        gateway::ratelimit::RateLimitConfig {
            limits: gateway::ratelimit::Limits {
                meeting_create: self.rate_limit_meeting_create,
                meeting_join: self.rate_limit_meeting_join,
                media_token: self.rate_limit_media_token,
                chat_post: self.rate_limit_chat_post,
            },
            redis: Some(gateway::ratelimit::LimiterRedis {
                url: cache.redis_url,
                cluster_nodes: cache.cluster_nodes,
                prefix: cache.prefix,
                timeout: cache.op_timeout,
            }),
        }
    }

    pub fn is_dev(&self) -> bool {
        self.env == "dev"
    }

    /// The HS256 secret: HUDDLE_JWT_SECRET (≥ 32 bytes; the public dev
    /// secret only in dev), or, when unset, the dev secret (with a warning)
    /// if `allow_dev_fallback` and HUDDLE_ENV is dev.
    pub fn jwt_secret(&self, allow_dev_fallback: bool) -> Result<String, String> {
        match &self.jwt_secret {
            Some(s) if s == DEV_JWT_SECRET && !self.is_dev() => Err(format!(
                "HUDDLE_JWT_SECRET is the public dev secret; HUDDLE_ENV={} refuses it",
                self.env
            )),
            Some(s) if s.len() >= MIN_JWT_SECRET_BYTES => Ok(s.clone()),
            Some(_) => Err(format!(
                "HUDDLE_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256)"
            )),
            None if allow_dev_fallback && self.is_dev() => {
                tracing::warn!(
                    "HUDDLE_JWT_SECRET is not set; using the built-in dev secret (HUDDLE_ENV=dev)"
                );
                Ok(DEV_JWT_SECRET.to_owned())
            }
            None if allow_dev_fallback => Err(format!(
                "HUDDLE_JWT_SECRET is required when HUDDLE_ENV={} (the built-in dev secret is for HUDDLE_ENV=dev only)",
                self.env
            )),
            None => Err(
                "HUDDLE_JWT_SECRET is required (the gateway never runs with the dev secret)"
                    .to_owned(),
            ),
        }
    }

    pub fn recording_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.recording_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_RECORDING_ADDR {addr:?} must be ip:port where the recording service listens (e.g. 0.0.0.0:50054)")
        })
    }

    pub fn user_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.user_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_USER_ADDR {addr:?} must be ip:port where the user service listens (e.g. 0.0.0.0:50051)")
        })
    }

    pub fn chat_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.chat_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_CHAT_ADDR {addr:?} must be ip:port where the chat service listens (e.g. 0.0.0.0:50053)")
        })
    }

    pub fn chat_stream_config(&self) -> chat_service::StreamConfig {
        chat_service::StreamConfig {
            poll: Duration::from_millis(self.chat_stream_poll_ms),
            buffer: self.chat_stream_buffer as usize,
            max_subscribers: self.chat_stream_max as usize,
        }
    }

    pub fn stream_limits(&self) -> gateway::chats::StreamLimits {
        gateway::chats::StreamLimits {
            heartbeat: Duration::from_millis(self.sse_heartbeat_ms),
            max_streams: self.sse_max_streams as usize,
            max_streams_per_user: self.sse_max_streams_per_user as usize,
        }
    }

    pub fn meeting_listen_addr(&self) -> Result<SocketAddr, String> {
        let addr = self.meeting_addr.trim_start_matches("http://");
        addr.parse().map_err(|_| {
            format!("HUDDLE_MEETING_ADDR {addr:?} must be ip:port where the meeting service listens (e.g. 0.0.0.0:50052)")
        })
    }
}

/// `30s`, `15m`, `1h`, `7d`, or plain seconds; positive and at most 365 days.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in {raw:?} (use s, m, h or d)"
            ));
        }
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| *s <= MAX_TOKEN_TTL.as_secs())
        .ok_or_else(|| format!("duration {raw:?} is longer than 365 days"))?;
    if secs == 0 {
        return Err("duration must be positive".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

mod prod_tls;
pub use prod_tls::Uses;

#[cfg(test)]
pub(crate) mod tests;
