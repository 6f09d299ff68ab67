//! The `publisher` program: publishes a numbered, timestamped message to one or more
//! channels at a fixed interval, to test subscribers by hand.
//!
//! Owns the publishing loop and its output; the protocol is `pubsub::Client`, the shared
//! flags and helpers are `pubsub::cli`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use pubsub::cli::{self, ConnectArgs};
use pubsub::Hello;
use serde::Serialize;

const EXAMPLES: &str = "\
Examples:
  publisher                                one message a second on `news`
  publisher news sports --interval 500ms   two channels, twice a second
  publisher news --count 3 --interval 0    three messages, as fast as acks come back
  publisher --addr 10.0.0.5:7400 --token s3cret alerts

Each message is a JSON object:
  {\"seq\":1,\"channel\":\"news\",\"time\":\"2024-05-01T12:34:56.789Z\",\"sent_at_ms\":1714566896789}
seq counts rounds from 1 (every channel gets the same seq in a round), time is UTC,
sent_at_ms is milliseconds since the Unix epoch (subtract it from your clock for latency).

Output, one line per publish:
  news: {\"seq\":1,...} -> 2 receivers

Exit status: 0 after --count rounds, 1 when the broker is unreachable, refuses a
publish or closes the connection, 2 on bad arguments.";

/// Publish a sequenced, timestamped JSON message to channels at a fixed interval.
#[derive(Debug, Parser)]
#[command(name = "publisher", version, after_help = EXAMPLES)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Channels to publish on (no wildcards).
    #[arg(value_name = "CHANNEL", default_value = "news")]
    channels: Vec<String>,

    /// Time between rounds: `500ms`, `1s`, `2m`, or seconds as a number (`0.25`);
    /// 0 publishes as fast as the broker acknowledges.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = cli::parse_duration)]
    interval: Duration,

    /// Stop after N rounds [default: run until interrupted].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// One published message; fields are written in this order.
#[derive(Serialize)]
struct Tick<'a> {
    seq: u64,
    channel: &'a str,
    time: String,
    sent_at_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("publisher: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (client, _welcome) = cli::connect(&args.connect, Hello::new().name("publisher"))?;
    let start = Instant::now();
    let mut seq = 0u64;
    while args.count.is_none_or(|n| seq < n) {
        // Rounds are scheduled from the start, so slow acks do not make the rate drift.
        if seq > 0 {
            let next = start
                + args
                    .interval
                    .saturating_mul(seq.min(u32::MAX as u64) as u32);
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        seq += 1;
        for channel in &args.channels {
            let sent_at_ms = cli::now_ms();
            let message = serde_json::to_string(&Tick {
                seq,
                channel,
                time: cli::rfc3339_utc(sent_at_ms),
                sent_at_ms,
            })
            .map_err(|e| format!("cannot encode message: {e}"))?;
            let receivers = client
                .publish_raw(channel, &message)
                .map_err(|e| format!("cannot publish to {channel}: {}", cli::describe(&e)))?;
            cli::print_line(&format!(
                "{channel}: {message} -> {}",
                cli::receivers(receivers)
            ));
        }
    }
    Ok(())
}
