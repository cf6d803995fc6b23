//! `huddle`: one binary for every Huddle process and its operator commands.

use std::process::ExitCode;

use clap::Parser;

mod cache_cmd;
mod config;
mod livekit_cmd;
mod metrics_server;
mod run;
mod setup_cmds;

use config::{Cli, Command};

/// glibc's malloc and free were ~10 % of a cached read's CPU (`make bench`
/// profile; many small short-lived allocations across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = huddle_common::telemetry::init(cli.global.log_format);
    let result = match cli
        .global
        .refuse_plain_datastores_in_prod(datastores(&cli.command))
    {
        Err(e) => Err(e.into()),
        Ok(()) => run(cli).await,
    };
    // Buffered log lines first, so the error is the last thing printed.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `command` connects to, for the prod TLS rule.
fn datastores(command: &Command) -> config::Uses {
    let (postgres, redis) = match command {
        Command::All(_) | Command::User | Command::Meeting | Command::Recording | Command::Chat => {
            (true, true)
        }
        Command::Gateway | Command::Cache(_) => (false, true),
        Command::Migrate(_) | Command::Seed => (true, false),
        Command::Token(_) | Command::LivekitWebhook(_) => (false, false),
    };
    config::Uses { postgres, redis }
}

async fn run(cli: Cli) -> run::CmdResult {
    match cli.command {
        Command::All(args) => run::all(&cli.global, args).await,
        Command::Gateway => run::gateway(&cli.global).await,
        Command::User => run::user(&cli.global).await,
        Command::Meeting => run::meeting(&cli.global).await,
        Command::Recording => run::recording(&cli.global).await,
        Command::Chat => run::chat(&cli.global).await,
        Command::Migrate(args) => setup_cmds::migrate(&cli.global, &args).await,
        Command::Seed => setup_cmds::seed(&cli.global).await,
        Command::Token(args) => setup_cmds::token(&cli.global, &args),
        Command::Cache(cmd) => cache_cmd::run(&cli.global, cmd).await,
        Command::LivekitWebhook(args) => livekit_cmd::post_webhook(&cli.global, &args).await,
    }
}
