//! `loadgen`: the load generator for our pub/sub broker and its peers.
//!
//! # Layout
//! - [`cli`]: flags, defaults and the `--target` URL.
//! - [`adapter`]: the wire protocols (JSON, Redis RESP2, NATS, MQTT 3.1.1) as bytes.
//! - [`stamp`]: the publisher id / sequence / send time carried in every payload.
//! - [`engine`]: worker threads with mio event loops, phases, flow control.
//! - [`scenario`]: what each scenario plans and measures.
//! - [`report`]: the human table and the JSON record.
//! - [`procinfo`]: CPU time, RSS and fd limits of loadgen and the broker.
//! - [`relay`]: the minimal single-threaded relay that marks the machine's ceiling.

mod adapter;
mod cli;
mod engine;
mod procinfo;
mod relay;
mod report;
mod scenario;
mod stamp;

use clap::Parser;
use cli::{Args, ScenarioName};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    procinfo::raise_fd_limit();
    if args.scenario() == ScenarioName::Relay {
        return match relay::run(args.listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.scenario() == ScenarioName::Fleet {
        let outcome = match &args.fleet_worker {
            Some(share) => scenario::fleet::holder::run(&args, share).map(|()| true),
            None => scenario::fleet::run(&args),
        };
        return match outcome {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("loadgen fleet: a check failed");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(args.scenario(), ScenarioName::Hostile | ScenarioName::Soak) {
        return match scenario::run_robustness(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("loadgen {}: a check failed", args.scenario().as_str());
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    let record = match scenario::run(&args) {
        Ok(record) => record,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = record.print(&mut stdout) {
        eprintln!("loadgen: writing the report: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = &args.json {
        if let Err(e) = record.append_json(path) {
            eprintln!("loadgen: appending to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if record.loss > 0 || record.reorder > 0 || record.errors > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
