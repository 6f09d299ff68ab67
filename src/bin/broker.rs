//! The `broker` program: parse flags, set up logging, install the signal handlers,
//! run.
//!
//! Signals belong to the program, not the library: SIGINT and SIGTERM reach the
//! reactor through its `Control` (a waker), so the library can run several brokers
//! in one process. Logging must never take the broker down: a closed or broken stderr
//! (a log shipper restarting, `| head`) loses log lines, nothing else.
//!
//! The program's allocator is jemalloc with its background thread: after a burst (large
//! frames, a slow consumer's queue) the broker frees the memory, and jemalloc's
//! background thread returns it to the system within about ten seconds even though the
//! quiet broker makes no further allocator calls. glibc's malloc kept such memory
//! (fragmented heap, raised mmap threshold) until the process ended. Only the program
//! sets this: embedders of the library keep their own allocator.

use std::io::{IsTerminal, Write};

use clap::Parser;
use pubsub::broker::{self, log_filter, Config};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let result = broker::start(&config).and_then(|b| {
        watch_signals(b.control());
        b.announce();
        b.run()
    });
    if let Err(e) = result {
        tracing::error!("{e}");
        say(&e.to_string());
        std::process::exit(1);
    }
}

/// Turns the first SIGINT or SIGTERM into a graceful shutdown.
fn watch_signals(control: broker::Control) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install signal handlers; SIGINT/SIGTERM will kill the broker without draining");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "signal received");
                control.shutdown();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the signal thread");
    }
}
