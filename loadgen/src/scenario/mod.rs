//! Scenarios: turn the command line into a [`Plan`](crate::engine::plan::Plan), run it on
//! the engine and fill in a [`Record`]. `traffic` owns the publishing scenarios
//! (clients, fanout, fanin, pairs, latency); `conns` owns the connection-limit ramp;
//! `propagation` measures subscription propagation across federation links. `barrier`
//! holds publishing back until interest has crossed the links (`--sub-target`), with the
//! probe client in `blocking`. `hostile` and `soak` are robustness runs against our
//! broker that print their own summary (watching it through `observe`) instead of a
//! throughput record; so does `fleet`, which spreads more clients than one process may
//! hold over worker processes of loadgen and a hub of brokers.

pub mod barrier;
pub mod blocking;
pub mod conns;
pub mod fleet;
pub mod hostile;
pub mod observe;
pub mod propagation;
pub mod soak;
pub mod traffic;

use crate::cli::{parse_targets, targets_text, Args, ScenarioName, Target};
use crate::report::Record;
use crate::stamp;
use thiserror::Error;

/// Why a scenario could not produce a result.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// A flag value makes no sense.
    #[error("{0}")]
    Usage(String),
    /// Threads or sockets could not be set up at all.
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
    /// A `fleet` run could not finish (a worker process, a prober or `STATS` failed).
    #[error("fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
}

/// Settings every scenario shares, with defaults applied.
#[derive(Debug, Clone)]
pub struct Common {
    /// Parsed target (the first of `pub_targets`).
    pub target: Target,
    /// Brokers publishers use (`--target`, a comma list).
    pub pub_targets: Vec<Target>,
    /// Brokers subscribers use (`--sub-target`; default: `pub_targets`).
    pub sub_targets: Vec<Target>,
    /// Worker threads.
    pub threads: usize,
}

impl Common {
    /// Validates the shared flags.
    pub fn from_args(args: &Args) -> Result<Common, ScenarioError> {
        let pub_targets = parse_targets(&args.target).map_err(ScenarioError::Usage)?;
        let target = pub_targets[0];
        let sub_targets = match &args.sub_target {
            Some(text) => parse_targets(text).map_err(ScenarioError::Usage)?,
            None => pub_targets.clone(),
        };
        if sub_targets[0].protocol != target.protocol {
            return Err(ScenarioError::Usage(format!(
                "--sub-target {} and --target {target} speak different protocols",
                sub_targets[0]
            )));
        }
        if args.token.is_some() && target.protocol != crate::adapter::Protocol::Json {
            return Err(ScenarioError::Usage(format!(
                "--token is for json:// targets (our broker); {target} speaks another protocol"
            )));
        }
        if args.payload < stamp::MIN_PAYLOAD {
            return Err(ScenarioError::Usage(format!(
                "--payload must be at least {} bytes (the stamp takes {})",
                stamp::MIN_PAYLOAD,
                stamp::STAMP_LEN
            )));
        }
        if !(args.duration > 0.0 && args.warmup >= 0.0 && args.drain >= 0.0) {
            return Err(ScenarioError::Usage(
                "--duration must be positive, --warmup and --drain not negative".into(),
            ));
        }
        for source in &args.source {
            match source {
                std::net::IpAddr::V4(v4) if v4.octets()[0] == 127 => {}
                _ => {
                    return Err(ScenarioError::Usage(format!(
                        "--source {source} is not a loopback address"
                    )))
                }
            }
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Common {
            target,
            pub_targets,
            sub_targets,
            threads: args.threads.unwrap_or(cores).max(1),
        })
    }
}

/// Runs the scenario chosen on the command line (not `relay`).
pub fn run(args: &Args) -> Result<Record, ScenarioError> {
    let common = Common::from_args(args)?;
    if let Some(token) = &args.token {
        crate::adapter::json::set_token(token);
    }
    let mut record = match args.scenario() {
        ScenarioName::Conns => conns::run(args, &common)?,
        ScenarioName::Propagation => propagation::run(args, &common)?,
        ScenarioName::Relay | ScenarioName::Hostile | ScenarioName::Soak | ScenarioName::Fleet => {
            return Err(ScenarioError::Usage(format!(
                "{} does not produce a throughput record",
                args.scenario().as_str()
            )))
        }
        name => traffic::run(name, args, &common)?,
    };
    record.unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    record.params.sources = args.source.iter().map(|s| s.to_string()).collect();
    if common.pub_targets.len() > 1 {
        record.target = targets_text(&common.pub_targets);
    }
    if common.sub_targets != common.pub_targets {
        record.sub_target = Some(targets_text(&common.sub_targets));
    }
    if let Some(pid) = args.broker_pid {
        record.broker_rss_bytes = crate::procinfo::pid_rss_bytes(pid);
    }
    Ok(record)
}

/// Runs `hostile` or `soak`, which print their own summaries; `Ok(true)` when every
/// check passed.
pub fn run_robustness(args: &Args) -> Result<bool, ScenarioError> {
    let common = Common::from_args(args)?;
    if let Some(pid) = args.broker_pid {
        if !crate::procinfo::pid_alive(pid) {
            return Err(ScenarioError::Usage(format!(
                "--broker-pid {pid}: no such process"
            )));
        }
    }
    match args.scenario() {
        ScenarioName::Hostile => hostile::run(args, common.target),
        _ => soak::run(args, common.target),
    }
}

/// `PREFIX.i`.
pub fn channel(args: &Args, i: usize) -> Vec<u8> {
    format!("{}.{i}", args.channel_prefix).into_bytes()
}
