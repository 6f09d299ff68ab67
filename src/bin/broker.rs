//! The `broker` program: parse flags, set up logging, run.
//!
//! Logging must never take the broker down: a closed or broken stderr (a log shipper
//! restarting, `| head`) loses log lines, nothing else.

use std::io::{IsTerminal, Write};

use clap::Parser;
use pubsub::broker::{self, log_filter, Config};
use tracing_subscriber::EnvFilter;

/// Writes a line to stderr if it can; a closed stderr is not an error worth dying for.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "broker: {text}");
}

fn main() {
    let config = Config::parse();
    let directives = match &config.log_level {
        Some(level) => level.clone(),
        None => match std::env::var("RUST_LOG") {
            Ok(env) if !env.trim().is_empty() => match log_filter(&env) {
                Ok(d) => d,
                Err(e) => {
                    say(&format!("invalid RUST_LOG: {e}"));
                    std::process::exit(2);
                }
            },
            _ => "info".to_string(),
        },
    };
    let filter = match EnvFilter::try_new(&directives) {
        Ok(f) => f,
        Err(e) => {
            say(&format!("invalid --log-level: {e}"));
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // The default reports a failed log write with eprintln!, which panics when
        // stderr itself is what failed.
        .log_internal_errors(false)
        .init();
    if let Err(e) = broker::run(config) {
        tracing::error!("{e}");
        say(&e.to_string());
        std::process::exit(1);
    }
}
