//! # livehouse
//!
//! The one binary. `livehouse` (= `livehouse all`) runs every role in one process on embedded
//! defaults; `livehouse api|living|msg|im-core|media` runs one role on shared backends. This
//! crate only parses configuration ([`config`]), connects the backends and wires the roles'
//! `run` entries and routers together ([`app`]) and serves HTTP with deadlines ([`http`]); it
//! holds no business logic. `livehouse admin`
//! ([`admin`]) grants account tags on the configured database.

mod adapters;
mod admin;
mod app;
mod config;
mod http;
mod http_caps;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = config::load_file_into_env(&args) {
        eprintln!("livehouse: {e}");
        return ExitCode::from(2);
    }
    let cli = config::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn,rdkafka=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("livehouse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let role = cli.role.unwrap_or(config::Role::All);
    let result = match role {
        config::Role::Admin { command } => runtime.block_on(admin::run(command, cli.config)),
        role => runtime.block_on(app::run(role, cli.config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("livehouse stopped: {e:#}");
            eprintln!("livehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
