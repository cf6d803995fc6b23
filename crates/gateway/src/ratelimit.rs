//! Per-user rate limits shared by every gateway replica (SPEC §3): a fixed
//! window counter per (limit, user[, meeting]) in Redis, bumped atomically
//! by one Lua script (INCR, PEXPIRE on the first hit, PTTL). Redis is an
//! optimisation here as everywhere: when it is down or slower than the
//! timeout the request goes through (fail-open) and the limiter stops asking
//! it for a second, so an outage costs at most one timeout per second.
//!
//! The limiter is the gateway's only Redis use. It reads and writes nothing
//! but its own counters, under the deployment's cache prefix
//! (`<prefix>ratelimit:<limit>:<user>[:<meeting>]`), through its own small
//! pool; it shares no code or connection with the services' cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{
    HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header},
    middleware::Next,
    web,
};
use deadpool_redis::Runtime;
use huddle_common::ErrorCode;
use prometheus::{IntCounterVec, Opts, Registry};
use redis::{Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike};
use uuid::Uuid;

use crate::auth::JwtVerifier;
use crate::error::ApiError;

/// Connections per gateway process: one script call per limited request.
const POOL_SIZE: usize = 8;
/// After a Redis failure, how long requests skip the limiter altogether.
const BACKOFF: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_REQUESTS: u32 = 1_000_000;

/// INCR the window's counter, start its expiry on the first hit (and repair
/// a counter left without one), answer the count and the ms left.
const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// At most `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn per(max: u32, window: Duration) -> Self {
        Self { max, window }
    }

    /// `30/60s`, `30/1m`, `20/10s`, `100/1h`: a count of 1..=1000000 per a
    /// window of 1 s to 24 h.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (count, window) = raw
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate limit {raw:?} must look like 30/60s"))?;
        let max: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {raw:?}: {count:?} is not a count"))?;
        if !(1..=MAX_REQUESTS).contains(&max) {
            return Err(format!(
                "rate limit {raw:?}: the count must be 1 to {MAX_REQUESTS}"
            ));
        }
        let window = window.trim();
        let split = window
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(window.len());
        let (digits, unit) = window.split_at(split);
        let n: u64 = if digits.is_empty() && !unit.is_empty() {
            1
        } else {
            digits
                .parse()
                .map_err(|_| format!("rate limit {raw:?}: bad window {window:?}"))?
        };
        let unit_secs = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => {
                return Err(format!("rate limit {raw:?}: window unit must be s, m or h"));
            }
        };
        let secs = n
            .checked_mul(unit_secs)
            .filter(|s| (1..=MAX_WINDOW.as_secs()).contains(s))
            .ok_or_else(|| format!("rate limit {raw:?}: the window must be 1s to 24h"))?;
        Ok(Self::per(max, Duration::from_secs(secs)))
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.max, self.window.as_secs())
    }
}

/// The limits of SPEC §3, each overridable (`HUDDLE_RATE_LIMIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub meeting_create: Limit,
    pub meeting_join: Limit,
    /// LiveKit room tokens (`POST /api/meetings/{id}/media-token`), per
    /// user across meetings.
    pub media_token: Limit,
    /// Per meeting; applies once `POST /api/meetings/{id}/chats` exists.
    pub chat_post: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            meeting_create: Limit::per(30, Duration::from_secs(60)),
            meeting_join: Limit::per(30, Duration::from_secs(60)),
            media_token: Limit::per(30, Duration::from_secs(60)),
            chat_post: Limit::per(20, Duration::from_secs(10)),
        }
    }
}

/// Where the counters live. `None` in [`RateLimitConfig::redis`] disables
/// limiting (unit tests without Redis).
#[derive(Debug, Clone)]
pub struct LimiterRedis {
    pub url: String,
    /// Redis Cluster seed nodes; when non-empty, `url` is unused.
    pub cluster_nodes: Vec<String>,
    /// The deployment's cache prefix, e.g. `huddle:v1:`.
    pub prefix: String,
    /// Bound on one limiter call, checkout included.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    pub limits: Limits,
    pub redis: Option<LimiterRedis>,
}

/// Which requests a limit counts, and whether per meeting.
struct Rule {
    method: Method,
    pattern: &'static str,
    name: &'static str,
    limit: fn(&Limits) -> Limit,
    per_meeting: bool,
}

fn rules() -> [Rule; 4] {
    [
        Rule {
            method: Method::POST,
            pattern: "/api/meetings",
            name: "meeting_create",
            limit: |l| l.meeting_create,
            per_meeting: false,
        },
        Rule {
            method: Method::POST,
            pattern: "/api/meetings/join",
            name: "meeting_join",
            limit: |l| l.meeting_join,
            per_meeting: false,
        },
        Rule {
            method: Method::POST,
            pattern: "/api/meetings/{id}/media-token",
            name: "media_token",
            limit: |l| l.media_token,
            per_meeting: false,
        },
        Rule {
            method: Method::POST,
            pattern: "/api/meetings/{id}/chats",
            name: "chat_post",
            limit: |l| l.chat_post,
            per_meeting: true,
        },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate limiter redis config: {0}")]
    Config(String),
}

enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

enum Conn {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; the window ends in this many seconds (≥ 1).
    Limited {
        retry_after_secs: u64,
    },
    /// Redis did not answer in time: let it through.
    FailedOpen,
}

struct Backend {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    /// Milliseconds since `epoch` before which Redis is not asked (0: ask).
    skip_until_ms: AtomicU64,
    /// Whether the last call failed, so an outage is logged once, not once
    /// a second.
    down: AtomicBool,
    epoch: Instant,
}

#[derive(Clone)]
pub struct Limiter {
    backend: Option<Arc<Backend>>,
    limits: Limits,
    decisions: IntCounterVec,
}

impl Limiter {
    pub fn new(config: &RateLimitConfig, registry: &Registry) -> Result<Self, LimiterError> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "huddle_rate_limit_decisions_total",
                "Rate-limited requests by limit and decision (allowed, limited, failed_open)",
            ),
            &["limit", "decision"],
        )
        .map_err(|e| LimiterError::Config(e.to_string()))?;
        registry
            .register(Box::new(decisions.clone()))
            .map_err(|e| LimiterError::Config(e.to_string()))?;
        // Every series exists from the start, at 0: an alert on
        // `rate(…{decision="failed_open"})` sees the first failure, not only
        // those after a series happened to appear.
        for rule in rules() {
            for decision in ["allowed", "limited", "failed_open"] {
                decisions.with_label_values(&[rule.name, decision]);
            }
        }
        let backend = config
            .redis
            .as_ref()
            .map(|redis| Backend::new(redis).map(Arc::new))
            .transpose()?;
        Ok(Self {
            backend,
            limits: config.limits,
            decisions,
        })
    }

    /// Whether the Redis this gateway shares with the cache may evict keys
    /// (an evicted tag set would leave values no write can find), for
    /// `/readyz`: `safe: …`, `UNSAFE: …` or `unknown: …`; `None` without a
    /// limiter Redis.
    pub async fn eviction(&self) -> Option<String> {
        let backend = self.backend.as_ref()?;
        let read = async {
            let mut conn = backend.conn().await?;
            let mut get = async |name: &str| -> Result<String, redis::RedisError> {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut conn)
                    .await?;
                Ok(pair.into_iter().nth(1).unwrap_or_default())
            };
            let maxmemory = get("maxmemory").await?;
            let policy = get("maxmemory-policy").await?;
            Ok::<_, redis::RedisError>((maxmemory, policy))
        };
        Some(
            match tokio::time::timeout(backend.timeout * 4, read).await {
                Ok(Ok((maxmemory, policy))) => {
                    let safe = maxmemory == "0" || policy == "noeviction";
                    let verdict = if safe { "safe" } else { "UNSAFE" };
                    format!("{verdict}: maxmemory={maxmemory} maxmemory-policy={policy}")
                }
                Ok(Err(e)) => format!("unknown: {e}"),
                Err(_) => "unknown: timed out".to_owned(),
            },
        )
    }

    /// Counts one request against `limit` for `subject` (`<user>` or
    /// `<user>:<meeting>`).
    pub async fn check(&self, name: &str, limit: Limit, subject: &str) -> Decision {
        let decision = match &self.backend {
            None => Decision::Allowed,
            Some(backend) => backend.check(name, limit, subject).await,
        };
        let label = match decision {
            Decision::Allowed => "allowed",
            Decision::Limited { .. } => "limited",
            Decision::FailedOpen => "failed_open",
        };
        self.decisions.with_label_values(&[name, label]).inc();
        decision
    }
}

impl Backend {
    fn new(config: &LimiterRedis) -> Result<Self, LimiterError> {
        let mut limits = deadpool_redis::PoolConfig::new(POOL_SIZE);
        limits.timeouts.wait = Some(config.timeout);
        limits.timeouts.create = Some(config.timeout);
        limits.timeouts.recycle = Some(config.timeout);
        let pool = if config.cluster_nodes.is_empty() {
            let mut c = deadpool_redis::Config::from_url(config.url.as_str());
            c.pool = Some(limits);
            Pool::Single(
                c.create_pool(Some(Runtime::Tokio1))
                    .map_err(|e| LimiterError::Config(e.to_string()))?,
            )
        } else {
            let mut c = deadpool_redis::cluster::Config::from_urls(config.cluster_nodes.clone());
            c.pool = Some(limits);
            Pool::Cluster(
                c.create_pool(Some(Runtime::Tokio1))
                    .map_err(|e| LimiterError::Config(e.to_string()))?,
            )
        };
        Ok(Self {
            pool,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            script: redis::Script::new(SCRIPT),
            skip_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn check(&self, name: &str, limit: Limit, subject: &str) -> Decision {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return Decision::FailedOpen;
        }
        let key = format!("{}ratelimit:{name}:{subject}", self.prefix);
        let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(self.timeout, self.count(&key, window_ms)).await {
            Ok(Ok((count, ttl_ms))) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limiter: redis answers again, limiting");
                }
                if count <= u64::from(limit.max) {
                    Decision::Allowed
                } else {
                    Decision::Limited {
                        retry_after_secs: ttl_ms.div_ceil(1000).max(1),
                    }
                }
            }
            Ok(Err(e)) => self.fail_open(&e.to_string()),
            Err(_) => self.fail_open("timed out"),
        }
    }

    async fn conn(&self) -> Result<Conn, redis::RedisError> {
        match &self.pool {
            Pool::Single(p) => p.get().await.map(Conn::Single),
            Pool::Cluster(p) => p.get().await.map(Conn::Cluster),
        }
        .map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Io, "pool checkout", e.to_string()))
        })
    }

    async fn count(&self, key: &str, window_ms: u64) -> Result<(u64, u64), redis::RedisError> {
        let mut conn = self.conn().await?;
        let (count, ttl): (i64, i64) = self
            .script
            .key(key)
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            u64::try_from(ttl).unwrap_or(0),
        ))
    }

    fn fail_open(&self, why: &str) -> Decision {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "rate limiter: redis unavailable, not limiting until it answers"
            );
        }
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(BACKOFF.as_millis()).unwrap_or(u64::MAX));
        self.skip_until_ms.store(until, Ordering::Relaxed);
        Decision::FailedOpen
    }
}

/// The value of the path segment where `pattern` has `{id}`.
fn path_id(pattern: &str, path: &str) -> Option<String> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(p, _)| *p == "{id}")
        .map(|(_, v)| v.to_owned())
}

/// Middleware (for `middleware::from_fn`): counts the requests the rules
/// name against the caller's limit, before the handler runs. Requests
/// without a user token pass untouched: the handler answers them 401/403.
/// A per-meeting rule counts only well-formed meeting ids, so junk paths
/// cannot mint keys.
pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Most requests are of a method no rule names: no path matching for them.
    if !rules().iter().any(|r| r.method == req.method()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let hit = req.match_pattern().and_then(|pattern| {
        rules()
            .into_iter()
            .find(|r| r.method == req.method() && r.pattern == pattern)
    });
    let Some(rule) = hit else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let limiter = req.app_data::<web::Data<Limiter>>().cloned();
    let user = req
        .app_data::<web::Data<JwtVerifier>>()
        .and_then(|v| v.authenticate(req.request()).ok())
        .and_then(|p| p.user_id);
    let (Some(limiter), Some(user)) = (limiter, user) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let subject = if rule.per_meeting {
        match path_id(rule.pattern, req.path()).and_then(|id| Uuid::parse_str(&id).ok()) {
            Some(meeting) => format!("{user}:{meeting}"),
            None => return Ok(next.call(req).await?.map_into_boxed_body()),
        }
    } else {
        user.to_string()
    };
    let limit = (rule.limit)(&limiter.limits);
    match limiter.check(rule.name, limit, &subject).await {
        Decision::Limited { retry_after_secs } => {
            let error = ApiError::new(
                ErrorCode::TooManyRequests,
                format!("rate limit of {limit} exceeded; retry in {retry_after_secs} s"),
            );
            let mut response: HttpResponse = error.error_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            Ok(req.into_response(response))
        }
        Decision::Allowed | Decision::FailedOpen => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_are_bounded() {
        assert_eq!(
            Limit::parse("30/60s"),
            Ok(Limit::per(30, Duration::from_secs(60)))
        );
        assert_eq!(
            Limit::parse("30/1m"),
            Ok(Limit::per(30, Duration::from_secs(60)))
        );
        assert_eq!(
            Limit::parse(" 20 / 10s "),
            Ok(Limit::per(20, Duration::from_secs(10)))
        );
        assert_eq!(
            Limit::parse("5/h"),
            Ok(Limit::per(5, Duration::from_secs(3600)))
        );
        for bad in [
            "",
            "30",
            "0/60s",
            "x/60s",
            "30/0s",
            "30/25h",
            "30/60d",
            "30/-1s",
            "30/99999999999999999999h",
            "1000001/1s",
            "30/60 s",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn path_ids_are_read_where_the_pattern_has_them() {
        let id = Uuid::new_v4().to_string();
        assert_eq!(
            path_id(
                "/api/meetings/{id}/chats",
                &format!("/api/meetings/{id}/chats")
            ),
            Some(id)
        );
        assert_eq!(path_id("/api/meetings", "/api/meetings"), None);
    }
}
