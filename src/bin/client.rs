//! The `client` program: subscribe, publish and ping from the command line, like
//! `nats sub/pub` or `mosquitto_sub/pub`.
//!
//! Owns the subcommands and their output formats; every protocol exchange goes through
//! `pubsub::Client`, and the shared flags and helpers live in `pubsub::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pubsub::cli::{self, ConnectArgs};
use pubsub::{Hello, Message};

const EXAMPLES: &str = "\
Examples:
  client sub news                      print messages on `news` until Ctrl-C
  client sub 'news.*' sports --count 5 stop after 5 messages
  client sub news --json               one JSON object per line
  client pub news '\"hello\"'            publish the JSON string \"hello\"
  client pub news hello                not JSON, so also sent as the string \"hello\"
  client pub news '{\"temp\": 21.5}'     publish a JSON object, text kept exactly
  client ping                          round-trip time to the broker
  client --addr 10.0.0.5:7400 --token s3cret sub news

Output:
  sub     `CHANNEL: MESSAGE` per message (MESSAGE is the JSON text as published), or
          with --json `{\"channel\":CHANNEL,\"message\":MESSAGE}`; `subscribed to CHANNEL`
          goes to stderr once the broker confirmed each subscription.
  pub     `published to N receivers` (N: connections the broker queued it to;
          `1 receiver` for one).
  ping    `pong from ADDR in T ms`.

Exit status: 0 on success, 1 when the broker is unreachable, refuses a command or
closes the connection, 2 on bad arguments.";

/// Talk to a pubsub broker: subscribe, publish, ping.
#[derive(Debug, Parser)]
#[command(name = "client", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe to channels and print each message until interrupted (or --count).
    ///
    /// Channels may hold wildcards: `*` matches one token, `>` one or more trailing
    /// tokens (`news.*`, `sensors.>`).
    Sub {
        /// Channels or patterns to subscribe to.
        #[arg(required = true, value_name = "CHANNEL")]
        channels: Vec<String>,

        /// Print one JSON object per message: {"channel":...,"message":...}.
        #[arg(long)]
        json: bool,

        /// Exit after printing N messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Publish one message and print how many connections received it.
    Pub {
        /// Channel to publish on (no wildcards).
        channel: String,

        /// The message: sent as is when it is valid JSON (`42`, `"hi"`, `{"a":1}`),
        /// otherwise sent as a JSON string.
        message: String,
    },
    /// Measure the round-trip time to the broker.
    Ping,
}

fn main() -> ExitCode {
    let args = Cli::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Cli) -> Result<(), String> {
    let (client, _welcome) = cli::connect(&args.connect, Hello::new().name("client"))?;
    match &args.command {
        Command::Sub {
            channels,
            json,
            count,
        } => {
            for channel in channels {
                client
                    .subscribe(channel)
                    .map_err(|e| format!("cannot subscribe to {channel}: {}", cli::describe(&e)))?;
                eprintln!("subscribed to {channel}");
            }
            let mut printed = 0u64;
            while count.is_none_or(|n| printed < n) {
                let message = client.recv().map_err(|e| cli::describe(&e))?;
                cli::print_line(&format_message(&message, *json));
                printed += 1;
            }
            Ok(())
        }
        Command::Pub { channel, message } => {
            let receivers = client
                .publish_raw(channel, &cli::message_json(message))
                .map_err(|e| format!("cannot publish to {channel}: {}", cli::describe(&e)))?;
            cli::print_line(&format!("published to {}", cli::receivers(receivers)));
            Ok(())
        }
        Command::Ping => {
            let rtt = client.ping().map_err(|e| cli::describe(&e))?;
            cli::print_line(&format!(
                "pong from {} in {:.3} ms",
                args.connect.addr,
                rtt.as_secs_f64() * 1000.0
            ));
            Ok(())
        }
    }
}

/// One output line for a message; the payload's JSON text is printed exactly as
/// received (a single line: a frame never holds a raw newline).
fn format_message(message: &Message, json: bool) -> String {
    if json {
        // Spliced rather than re-serialised, so numbers and escapes stay as published.
        let channel = serde_json::Value::from(message.channel.as_str());
        format!("{{\"channel\":{channel},\"message\":{}}}", message.raw())
    } else {
        format!("{}: {}", message.channel, message.raw())
    }
}
