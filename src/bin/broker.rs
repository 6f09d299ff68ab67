//! The `broker` program: parse flags, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use pubsub::broker::{self, Config};
use tracing_subscriber::EnvFilter;

fn main() {
    let config = Config::parse();
    let filter = match &config.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("broker: invalid --log-level: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = broker::run(config) {
        tracing::error!("{e}");
        eprintln!("broker: {e}");
        std::process::exit(1);
    }
}
