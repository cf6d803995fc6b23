//! LiveKit settings and `huddle livekit-webhook`: a signed egress webhook
//! posted to the gateway exactly as a LiveKit server would send it, so the
//! recording flow can be driven locally without LiveKit.

use clap::Args;
use recording_service::{
    LivekitKeys,
    livekit::{EgressStatus, EgressWebhook},
};

use crate::{config::Global, run::CmdResult};

/// LiveKit's own dev credentials (`livekit-server --dev`), so `huddle all`
/// verifies webhooks of a local LiveKit with no setup. Public: only
/// `huddle all` and `huddle livekit-webhook` in HUDDLE_ENV=dev fall back to
/// them; outside dev they are refused even when set explicitly.
pub const DEV_LIVEKIT_API_KEY: &str = "devkey";
pub const DEV_LIVEKIT_API_SECRET: &str = "secret";
/// Outside dev, shorter secrets are refused (HS256 wants 32 bytes).
const MIN_SECRET_BYTES: usize = 32;

#[derive(Args)]
pub struct LivekitWebhookArgs {
    #[arg(long, default_value = "egress_ended",
          value_parser = ["egress_started", "egress_updated", "egress_ended"])]
    pub event: String,
    /// The meeting id (LiveKit's room name).
    #[arg(long)]
    pub meeting: String,
    /// The egress id; default `EG_<meeting>`, so the events of one meeting
    /// move one recording.
    #[arg(long)]
    pub egress: Option<String>,
    /// LiveKit's egress status; default: active for started/updated,
    /// complete for ended.
    #[arg(long, value_parser = ["starting", "active", "ending", "complete", "failed", "aborted", "limit_reached"])]
    pub status: Option<String>,
    /// The file's location once complete; default a made-up URL.
    #[arg(long)]
    pub file_url: Option<String>,
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u32,
    #[arg(long, default_value_t = 1_048_576)]
    pub size_bytes: u32,
    /// The error text of a failed egress.
    #[arg(long, default_value = "")]
    pub error: String,
    /// Gateway base URL; default http://HUDDLE_HTTP_ADDR.
    #[arg(long)]
    pub url: Option<String>,
}

/// LIVEKIT_API_KEY and LIVEKIT_API_SECRET, or, when both are unset,
/// LiveKit's dev pair (with a warning) if `allow_dev_fallback` and
/// HUDDLE_ENV is dev. Outside dev a secret under 32 bytes (the dev one, a
/// placeholder) is refused.
pub fn livekit_keys(global: &Global, allow_dev_fallback: bool) -> Result<LivekitKeys, String> {
    let (key, secret) = match (&global.livekit_api_key, &global.livekit_api_secret) {
        (Some(key), Some(secret)) if !key.is_empty() && !secret.is_empty() => {
            (key.clone(), secret.clone())
        }
        (None, None) if allow_dev_fallback && global.is_dev() => {
            tracing::warn!(
                "LIVEKIT_API_KEY/LIVEKIT_API_SECRET are not set; using LiveKit's dev pair (HUDDLE_ENV=dev)"
            );
            (
                DEV_LIVEKIT_API_KEY.to_owned(),
                DEV_LIVEKIT_API_SECRET.to_owned(),
            )
        }
        _ => {
            return Err(format!(
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET are both required with HUDDLE_ENV={} \
                 (only `huddle all` in dev falls back to LiveKit's dev pair, when both are unset)",
                global.env
            ));
        }
    };
    // LiveKit generates 32+ character secrets; a short one is a placeholder
    // (the manifests' REPLACE_ME) or the public dev pair.
    if !global.is_dev() && secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "LIVEKIT_API_SECRET must be at least {MIN_SECRET_BYTES} bytes with HUDDLE_ENV={} \
             (LiveKit's dev secret is for HUDDLE_ENV=dev only)",
            global.env
        ));
    }
    Ok(LivekitKeys {
        api_key: key,
        api_secret: secret,
    })
}

/// Where LiveKit is and how long room tokens last (recording-service's).
pub fn media_config(global: &Global) -> recording_service::MediaConfig {
    recording_service::MediaConfig {
        url: global.livekit_url.clone().filter(|u| !u.trim().is_empty()),
        api_url: global
            .livekit_api_url
            .clone()
            .filter(|u| !u.trim().is_empty()),
        token_ttl: std::time::Duration::from_secs(global.media_token_ttl_secs),
        recording_filepath: global.recording_filepath.clone(),
        ..recording_service::MediaConfig::default()
    }
}

/// The webhook the arguments describe.
pub fn webhook(args: &LivekitWebhookArgs) -> EgressWebhook {
    let status = match (args.status.as_deref(), args.event.as_str()) {
        (Some("starting"), _) => EgressStatus::EgressStarting,
        (Some("ending"), _) => EgressStatus::EgressEnding,
        (Some("complete"), _) | (None, "egress_ended") => EgressStatus::EgressComplete,
        (Some("failed"), _) => EgressStatus::EgressFailed,
        (Some("aborted"), _) => EgressStatus::EgressAborted,
        (Some("limit_reached"), _) => EgressStatus::EgressLimitReached,
        _ => EgressStatus::EgressActive,
    };
    let egress_id = args
        .egress
        .clone()
        .unwrap_or_else(|| format!("EG_{}", args.meeting));
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let duration_ns = i64::from(args.duration_secs) * 1_000_000_000;
    let ended = status == EgressStatus::EgressComplete;
    let file_url = args
        .file_url
        .clone()
        .unwrap_or_else(|| format!("https://storage.example/recordings/{egress_id}.mp4"));
    EgressWebhook {
        event: args.event.clone(),
        room: args.meeting.clone(),
        egress_id,
        status,
        started_at_ns: now_ns - duration_ns,
        ended_at_ns: if ended { now_ns } else { 0 },
        file: ended.then(|| (file_url, duration_ns, i64::from(args.size_bytes))),
        error: args.error.clone(),
        created_at: now_ns / 1_000_000_000,
    }
}

pub async fn post_webhook(global: &Global, args: &LivekitWebhookArgs) -> CmdResult {
    let keys = livekit_keys(global, true)?;
    let body = webhook(args).to_json()?;
    let authorization = keys.sign(body.as_bytes())?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", huddle::stack::loopback(global.http_addr)));
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        gateway::recordings::WEBHOOK_PATH
    );
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/webhook+json")
        .header("authorization", authorization)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    println!("{status} {}", response.text().await?);
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the gateway answered {status}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::global;

    const SECRET: &str = "s3cr3t-0123456789abcdef0123456789";

    /// Only `huddle all` (and this dev command) in dev may run without the
    /// LiveKit keys; nobody outside dev runs with LiveKit's public dev pair
    /// or a placeholder. Seen to fail with the length check removed:
    /// `--env prod` with `--livekit-api-secret secret` was accepted.
    #[test]
    fn livekit_keys_are_required_outside_dev() {
        let dev = global(&[]).unwrap();
        assert_eq!(
            livekit_keys(&dev, true).unwrap().api_key,
            DEV_LIVEKIT_API_KEY
        );
        assert!(
            livekit_keys(&dev, false).is_err(),
            "huddle recording never falls back"
        );
        let half = global(&["--livekit-api-key", "k"]).unwrap();
        assert!(livekit_keys(&half, true).is_err(), "a key without a secret");
        for env in ["test", "prod"] {
            assert!(livekit_keys(&global(&["--env", env]).unwrap(), true).is_err());
            let dev_pair = [
                "--env",
                env,
                "--livekit-api-key",
                "devkey",
                "--livekit-api-secret",
                "secret",
            ];
            assert!(
                livekit_keys(&global(&dev_pair).unwrap(), false).is_err(),
                "{env}"
            );
        }
        let set = [
            "--env",
            "prod",
            "--livekit-api-key",
            "APIabc",
            "--livekit-api-secret",
            SECRET,
        ];
        let keys = livekit_keys(&global(&set).unwrap(), false).unwrap();
        assert_eq!(
            (keys.api_key.as_str(), keys.api_secret.as_str()),
            ("APIabc", SECRET)
        );
        let mut placeholder = set;
        placeholder[5] = "REPLACE_ME";
        assert!(livekit_keys(&global(&placeholder).unwrap(), false).is_err());
    }
}
