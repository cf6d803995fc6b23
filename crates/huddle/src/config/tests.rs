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

/// Seen to fail before the bound: `18446744073709551615d` overflowed
/// (a panic in debug builds) and `100000d` was accepted.
#[test]
fn durations_are_bounded() {
    assert_eq!(parse_duration("365d"), Ok(MAX_TOKEN_TTL));
    assert!(parse_duration("366d").is_err());
    assert!(parse_duration("18446744073709551615d").is_err());
    assert!(parse_duration("99999999999999999999999").is_err());
}

pub(crate) fn global(args: &[&str]) -> Result<Global, clap::Error> {
    let mut argv = vec!["huddle"];
    argv.extend_from_slice(args);
    argv.push("all");
    Cli::try_parse_from(argv).map(|cli| cli.global)
}

/// Outside dev the public secret is refused, set or not; in dev (the
/// default, so `make run` works with no environment) it is the fallback.
/// Seen to fail before the fix: with `--env prod` and no secret,
/// `jwt_secret(true)` returned the dev secret.
#[test]
fn the_dev_secret_is_for_dev_only() {
    let dev = global(&[]).unwrap();
    assert_eq!(dev.jwt_secret(true).unwrap(), DEV_JWT_SECRET);
    assert!(
        dev.jwt_secret(false).is_err(),
        "huddle gateway never falls back"
    );
    for env in ["test", "prod"] {
        let g = global(&["--env", env]).unwrap();
        assert!(g.jwt_secret(true).is_err(), "{env}");
        let g = global(&["--env", env, "--jwt-secret", DEV_JWT_SECRET]).unwrap();
        assert!(g.jwt_secret(true).is_err(), "{env}: explicit dev secret");
    }
    assert!(
        global(&["--env", "production"]).is_err(),
        "unknown HUDDLE_ENV"
    );
}

/// Seen to fail before the fix: a 16-byte secret was accepted.
#[test]
fn hs256_secrets_need_32_bytes() {
    let short = "0123456789abcdef0123456789abcde";
    let g = global(&["--env", "prod", "--jwt-secret", short]).unwrap();
    assert!(g.jwt_secret(false).is_err());
    let ok = "0123456789abcdef0123456789abcdef";
    let g = global(&["--env", "prod", "--jwt-secret", ok]).unwrap();
    assert_eq!(g.jwt_secret(false).unwrap(), ok);
}

/// Seen to fail before the bound: `--request-timeout-ms 0` was accepted
/// (every gRPC call would time out at once).
#[test]
fn timeouts_are_bounded() {
    assert!(global(&["--request-timeout-ms", "0"]).is_err());
    assert!(global(&["--request-timeout-ms", "300001"]).is_err());
    assert!(global(&["--request-timeout-ms", "18446744073709551615"]).is_err());
    assert!(global(&["--redis-timeout-ms", "0"]).is_err());
    assert_eq!(
        global(&["--request-timeout-ms", "300000"])
            .unwrap()
            .request_timeout_ms,
        300_000
    );
}

/// Seen to fail before the fix: `token --admin --ttl 1h` was refused
/// ("'--admin' cannot be used with '--ttl'").
#[test]
fn token_takes_a_ttl_with_either_subject() {
    for args in [
        vec!["huddle", "token", "--admin", "--ttl", "2h"],
        vec![
            "huddle",
            "token",
            "--user",
            "7f0c7b8e-3f0a-4c4e-9a53-1d2b3c4d5e6f",
            "--ttl",
            "30m",
        ],
    ] {
        let cli = Cli::try_parse_from(&args).unwrap();
        let Command::Token(token) = cli.command else {
            panic!("not token")
        };
        assert!(token.ttl >= Duration::from_secs(1800), "{args:?}");
    }
    assert!(Cli::try_parse_from(["huddle", "token", "--ttl", "1h"]).is_err());
    assert!(
        Cli::try_parse_from([
            "huddle",
            "token",
            "--admin",
            "--user",
            "7f0c7b8e-3f0a-4c4e-9a53-1d2b3c4d5e6f"
        ])
        .is_err()
    );
}

/// Rate limits come from the environment, validated at start; the
/// defaults are SPEC §3's.
#[test]
fn rate_limits_are_configurable_and_validated() {
    let g = global(&[]).unwrap();
    let limits = g.rate_limit_config().limits;
    assert_eq!(limits, gateway::ratelimit::Limits::default());
    let g = global(&["--rate-limit-meeting-create", "5/10s"]).unwrap();
    assert_eq!(
        g.rate_limit_config().limits.meeting_create.to_string(),
        "5/10s"
    );
    assert_eq!(g.rate_limit_config().redis.unwrap().prefix, "huddle:v1:");
    for bad in ["0/60s", "30", "30/0s", "30/2d"] {
        assert!(
            global(&["--rate-limit-meeting-join", bad]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn defaults_need_no_environment() {
    let cli = Cli::try_parse_from(["huddle", "all"]).unwrap();
    assert_eq!(cli.global.http_addr.port(), 8080);
    assert_eq!(cli.global.cache_prefix, "huddle:v1:");
    assert_eq!(cli.global.user_listen_addr().unwrap().port(), 50051);
    assert_eq!(cli.global.meeting_listen_addr().unwrap().port(), 50052);
    assert_eq!(cli.global.recording_listen_addr().unwrap().port(), 50054);
    assert_eq!(cli.global.cache_config().pool_size, 32);
    assert!(cli.global.cache_config().previous_prefixes.is_empty());
}

#[test]
fn cache_rollout_and_pool_settings_reach_the_cache_config() {
    let cli = Cli::try_parse_from([
        "huddle",
        "--cache-previous-prefixes",
        "huddle:v1:, huddle:v0:",
        "--redis-pool-size",
        "64",
        "all",
    ])
    .unwrap();
    let config = cli.global.cache_config();
    assert_eq!(config.previous_prefixes, ["huddle:v1:", "huddle:v0:"]);
    assert_eq!(config.pool_size, 64);
    assert!(Cli::try_parse_from(["huddle", "--redis-pool-size", "0", "all"]).is_err());
}

#[test]
fn failover_settings_reach_the_cache_config() {
    let defaults = Cli::try_parse_from(["huddle", "all"])
        .unwrap()
        .global
        .cache_config();
    assert_eq!(defaults.wait_replicas, cache_core::WaitReplicas::Auto);
    assert!(defaults.sentinels.is_empty());
    let cli = Cli::try_parse_from([
        "huddle",
        "--redis-wait-replicas",
        "2",
        "--redis-wait-timeout-ms",
        "250",
        "--redis-sentinels",
        "10.0.0.1:26379, 10.0.0.2:26379",
        "--redis-sentinel-master",
        "cache",
        "all",
    ])
    .unwrap();
    let config = cli.global.cache_config();
    assert_eq!(config.wait_replicas, cache_core::WaitReplicas::Count(2));
    assert_eq!(config.wait_timeout, Duration::from_millis(250));
    assert_eq!(config.sentinels, ["10.0.0.1:26379", "10.0.0.2:26379"]);
    assert_eq!(config.sentinel_master, "cache");
    for bad in ["-1", "all", "65"] {
        assert!(
            Cli::try_parse_from(["huddle", "--redis-wait-replicas", bad, "all"]).is_err(),
            "{bad}"
        );
    }
    assert!(Cli::try_parse_from(["huddle", "--redis-wait-timeout-ms", "0", "all"]).is_err());
}

/// The read window's settings are gone and read by nothing, so a
/// deployment that still sets them starts (clap ignores environment
/// variables no argument names; `read_window.rs` starts the binary with
/// them set). Seen to fail with `HUDDLE_READ_WINDOW_MS` still declared.
#[test]
fn the_read_window_settings_are_read_by_nothing() {
    use clap::CommandFactory;
    let mut names = Vec::new();
    let cli = Cli::command();
    for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.push(env.to_string_lossy().into_owned());
            }
        }
    }
    assert!(names.iter().any(|n| n == "HUDDLE_CACHE_READS"), "{names:?}");
    for gone in ["HUDDLE_READ_WINDOW_MS", "HUDDLE_READ_FENCE_MS"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} is still read");
    }
}
