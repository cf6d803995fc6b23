//! Logging through tracing: human-readable by default, JSON when
//! `LOG_FORMAT=json`, filtered by `RUST_LOG`.

use std::str::FromStr;

use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" | "" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("LOG_FORMAT must be json or pretty, got {other:?}")),
        }
    }
}

/// Installs the process-wide subscriber. Call once, from `main` only: library
/// code and tests never install one, so they can run side by side.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tower=warn,hyper=warn"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
