//! Command-line interface: every flag, its default and its help text, and the `--target`
//! URL. Owns parsing only; scenarios read the resulting [`Args`].

use crate::adapter::Protocol;
use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// --clients subscribers spread over --publishers channels, one publisher per channel,
    /// windowed throughput (the default: an out-of-the-box smoke test).
    Clients,
    /// 1 publisher -> N subscribers of one channel (-n, --payload).
    Fanout,
    /// N publishers -> 1 subscriber of one channel (--publishers).
    Fanin,
    /// N publisher/subscriber pairs, each on its own channel (-n).
    Pairs,
    /// 1 publisher at a fixed --rate -> N subscribers; latency from the intended send time.
    Latency,
    /// Ramp idle subscribed connections up to --clients or until a limit stops it.
    Conns,
    /// Subscription propagation delay across federation links: a fresh subscriber on
    /// --sub-target subscribes to a fresh channel while a publisher on --target sends
    /// probes every --probe-interval-us; --trials times (json:// only).
    Propagation,
    /// More clients than one process has fds for, across a hub of brokers (json://
    /// only): --processes loadgen worker processes hold --clients idle subscribers, one
    /// channel each, spread over the --target brokers and --source addresses; reports
    /// memory per client and checks that a publish to --probe random channels through
    /// random brokers arrives exactly once, at its own subscriber only.
    Fleet,
    /// Run the minimal no-parse JSON relay on --listen (the machine's ceiling).
    Relay,
    /// --clients randomized hostile clients (valid and invalid frames, random splits,
    /// resets, half-closes) for --duration, --rounds times; the broker's RSS and STATS
    /// after each round (json:// only).
    Hostile,
    /// Long-running mixed load (churn, slow consumers, max-size messages, checked flows,
    /// a PING watchdog) for --duration; checks fds, subscriptions and RSS return to their
    /// baseline (json:// only).
    Soak,
}

impl ScenarioName {
    /// The name as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Clients => "clients",
            ScenarioName::Fanout => "fanout",
            ScenarioName::Fanin => "fanin",
            ScenarioName::Pairs => "pairs",
            ScenarioName::Latency => "latency",
            ScenarioName::Conns => "conns",
            ScenarioName::Propagation => "propagation",
            ScenarioName::Fleet => "fleet",
            ScenarioName::Relay => "relay",
            ScenarioName::Hostile => "hostile",
            ScenarioName::Soak => "soak",
        }
    }
}

/// Load generator for pub/sub brokers: our JSON broker, Redis, NATS and MQTT.
///
/// Throughput scenarios (clients, fanout, fanin, pairs) use one flow-control rule for every
/// broker: each publisher keeps at most --window messages in flight (published but not yet
/// received by every subscriber). Every payload carries publisher id, sequence number and
/// send time; loss and reordering are counted and must be 0.
///
/// Examples:
///   loadgen --clients 10000
///   loadgen --clients 100 --target json://127.0.0.1:7400 --token s3cret
///   loadgen fanout -n 1000 --payload 16 --target nats://127.0.0.1:4222
///   loadgen latency -n 100 --rate 50000 --broker-pid $(pidof broker)
///   loadgen conns --clients 19000 --source 127.0.0.2,127.0.0.3 --broker-pid PID
///   loadgen relay --listen 127.0.0.1:7401
///   loadgen pairs -n 100 --target json://127.0.0.1:7401 --sub-target json://127.0.0.1:7402
///   loadgen propagation --target json://127.0.0.1:7401 --sub-target json://127.0.0.1:7402
///   loadgen fleet --clients 30000 --processes 2 --target json://127.0.0.1:7400,json://127.0.0.1:7401
///       --source 127.0.0.2,127.0.0.3 --broker-pids PID,PID
///   loadgen hostile --clients 12 --duration 8s --rounds 7 --broker-pid PID
///   loadgen soak --duration 10m --broker-pid PID
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, verbatim_doc_comment)]
pub struct Args {
    /// Scenario to run (default: clients).
    #[arg(value_enum, value_name = "SCENARIO")]
    pub scenario_pos: Option<ScenarioName>,

    /// Scenario to run, as a flag (same values as the positional SCENARIO).
    #[arg(
        long = "scenario",
        value_enum,
        value_name = "SCENARIO",
        conflicts_with = "scenario_pos",
        hide_possible_values = true
    )]
    pub scenario_flag: Option<ScenarioName>,

    /// Broker to load: json://, redis://, nats:// or mqtt:// HOST:PORT (127.0.0.x only).
    /// Publishers connect here. A comma list spreads publishers by channel: channel i
    /// publishes through target i mod count.
    #[arg(long, default_value = "json://127.0.0.1:7400")]
    pub target: String,

    /// Where subscribers connect (default: --target), same scheme as --target. A comma
    /// list spreads subscribers: subscriber j of channel i uses sub-target (i + j) mod
    /// count, so `pairs` with equal lists keeps each pair on one broker. When a subscriber
    /// uses another broker than its publisher, loadgen waits before publishing until a
    /// probe published on every channel has reached every subscriber (interest has
    /// crossed the federation links).
    #[arg(long)]
    pub sub_target: Option<String>,

    /// Token for a pubsub broker started with --token: every json:// connection sends it
    /// in its HELLO, before anything else (json:// targets only).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,

    /// propagation: number of trials (fresh subscriber, fresh channel each).
    #[arg(long, default_value_t = 200)]
    pub trials: usize,

    /// propagation: microseconds between probes (the measurement's resolution).
    #[arg(long, default_value_t = 100)]
    pub probe_interval_us: u64,

    /// clients: subscriber connections (default 1000). conns: ramp up to this many
    /// connections (default 10000). fleet: subscribers over all worker processes
    /// (default 10000). hostile: hostile clients (default 12). soak: churn threads
    /// (default 4).
    #[arg(short = 'c', long)]
    pub clients: Option<usize>,

    /// fanout, latency: subscribers (default 10). pairs: number of pairs (default 100).
    #[arg(short = 'n', long)]
    pub subscribers: Option<usize>,

    /// fanin: publishers (default 16). clients: publishers, one channel each (default 10).
    #[arg(short = 'p', long)]
    pub publishers: Option<usize>,

    /// Payload size in bytes, at least 16 (the stamp takes 15).
    #[arg(short = 's', long, default_value_t = 16)]
    pub payload: usize,

    /// Messages in flight per publisher. Default 1000, lowered so that at most 1,000,000
    /// deliveries are in flight in total (never below 16).
    #[arg(short = 'w', long)]
    pub window: Option<usize>,

    /// latency: messages per second published (paced; not windowed).
    #[arg(short = 'r', long, default_value_t = 10_000.0)]
    pub rate: f64,

    /// Seconds measured (after the warm-up); hostile: length of one round; soak: length
    /// of the run. A number of seconds, or with a unit: 500ms, 8s, 10m, 1h.
    #[arg(short = 'd', long, default_value = "5", value_parser = parse_secs)]
    pub duration: f64,

    /// Seconds of traffic before measuring starts (not counted in rates or latency).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Seconds to wait, after publishing stops, for in-flight messages before counting loss.
    /// hostile, soak: seconds to wait after the load left (and STATS shows it gone) before
    /// reading the broker's RSS.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,

    /// Seconds a connection may take to connect and confirm its subscription.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Connection attempts in flight at once. The default matches the listen backlog of
    /// many servers (mio's TcpListener::bind uses 128): more overflow it, and each dropped
    /// SYN costs a 1 s retransmission.
    #[arg(long, default_value_t = 128)]
    pub connecting: usize,

    /// Event-loop threads (default: number of cores). The latency publisher gets its own.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,

    /// Comma-separated local source addresses (e.g. 127.0.0.2,127.0.0.3) to spread
    /// connections over, past ~28,000 ephemeral ports per source address.
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<IpAddr>,

    /// PID of the broker, to report its CPU time and RSS (and classify limits).
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Append one JSON record per run to this file (JSON Lines).
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Channel names are PREFIX.0, PREFIX.1, ...
    #[arg(long, default_value = "bench")]
    pub channel_prefix: String,

    /// relay: address to listen on.
    #[arg(long, default_value = "127.0.0.1:7401")]
    pub listen: SocketAddr,

    /// conns, fleet: how many random subscribers the final publish check targets.
    #[arg(long, default_value_t = 100)]
    pub probe: usize,

    /// fleet: loadgen worker processes holding the clients (default: as few as keep each
    /// under loadgen's fd limit, less a reserve). Each gets --threads event loops
    /// (default 1 in a worker) and --connecting attempts in flight.
    #[arg(long)]
    pub processes: Option<usize>,

    /// fleet: PIDs of the brokers, comma-separated, in the order of --sub-target (or
    /// --target), to report each broker's RSS growth per client.
    #[arg(long, value_delimiter = ',')]
    pub broker_pids: Vec<u32>,

    /// fleet: seconds to wait for interest to reach every broker (their routers hold
    /// every channel, from STATS), and then for interest probes to reach the checked
    /// clients. The checks themselves get --drain seconds to arrive.
    #[arg(long, default_value_t = 120.0, value_parser = parse_secs)]
    pub interest_timeout: f64,

    /// fleet, internal: run as one worker process holding clients START..START+COUNT
    /// and answering its parent on stdin/stdout.
    #[arg(long, hide = true, value_name = "START:COUNT")]
    pub fleet_worker: Option<String>,

    /// hostile: how many times the clients come and go.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,

    /// hostile, soak: seed of the random choices (default: from the clock; always printed,
    /// so a run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,

    /// hostile, soak: longest message published, in bytes (soak: its max-size messages).
    #[arg(long, default_value_t = 200_000)]
    pub max_message: usize,

    /// soak: messages per second on each checked flow.
    #[arg(long, default_value_t = 200.0)]
    pub flow_rate: f64,

    /// soak: checked publisher -> subscriber flows.
    #[arg(long, default_value_t = 4)]
    pub flows: usize,

    /// soak: allowed RSS growth over the baseline at the end, in MiB.
    #[arg(long, default_value_t = 32.0)]
    pub rss_tolerance_mib: f64,
}

/// Parses a duration: plain seconds (`8`, `0.5`) or a number with a unit (`500ms`, `8s`,
/// `10m`, `1h`). Returns seconds.
pub fn parse_secs(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 8, 8s, 500ms, 10m, 1h)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(value * scale)
}

impl Args {
    /// The scenario chosen positionally or with --scenario.
    pub fn scenario(&self) -> ScenarioName {
        self.scenario_pos
            .or(self.scenario_flag)
            .unwrap_or(ScenarioName::Clients)
    }
}

/// A parsed `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Wire protocol.
    pub protocol: Protocol,
    /// Where to connect.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.protocol.scheme(), self.addr)
    }
}

/// Parses `scheme://ip[:port]`; only loopback 127.0.0.x addresses are accepted, so a
/// benchmark can never flood another machine.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| {
        format!("target {text:?} has no scheme (json://, redis://, nats://, mqtt://)")
    })?;
    let protocol = Protocol::from_scheme(scheme)
        .ok_or_else(|| format!("unknown target scheme {scheme:?} (json, redis, nats, mqtt)"))?;
    let rest = rest.trim_end_matches('/');
    let rest = rest.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = match rest.parse() {
        Ok(addr) => addr,
        Err(_) => {
            let ip: IpAddr = rest
                .parse()
                .map_err(|_| format!("target address {rest:?} is not IP[:PORT]"))?;
            SocketAddr::new(ip, protocol.default_port())
        }
    };
    match addr.ip() {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] => Ok(Target { protocol, addr }),
        _ => Err(format!(
            "target {addr} refused: loadgen only sends traffic to 127.0.0.x"
        )),
    }
}

/// Parses a comma-separated list of targets (at least one), all with the same scheme:
/// every connection of a run speaks one protocol.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    let targets = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_target)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = targets.first() else {
        return Err(format!("target list {text:?} is empty"));
    };
    if let Some(other) = targets.iter().find(|t| t.protocol != first.protocol) {
        return Err(format!(
            "targets {first} and {other} speak different protocols; one run speaks one"
        ));
    }
    Ok(targets)
}

/// A list of targets as written on the command line.
pub fn targets_text(targets: &[Target]) -> String {
    targets
        .iter()
        .map(Target::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lists() {
        let t = parse_targets("json://127.0.0.1:7401, json://127.0.0.1:7402,").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].addr.port(), 7402);
        assert_eq!(
            targets_text(&t),
            "json://127.0.0.1:7401,json://127.0.0.1:7402"
        );
        assert!(parse_targets("json://127.0.0.1:7401,nats://127.0.0.1").is_err());
        assert!(parse_targets(" , ").is_err());
        let a = Args::try_parse_from([
            "loadgen",
            "propagation",
            "--sub-target",
            "json://127.0.0.1:7402",
            "--trials",
            "5",
        ])
        .unwrap();
        assert_eq!(a.scenario(), ScenarioName::Propagation);
        assert_eq!(a.sub_target.as_deref(), Some("json://127.0.0.1:7402"));
        assert_eq!((a.trials, a.probe_interval_us), (5, 100));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_secs("8"), Ok(8.0));
        assert_eq!(parse_secs("8s"), Ok(8.0));
        assert_eq!(parse_secs("500ms"), Ok(0.5));
        assert_eq!(parse_secs("10m"), Ok(600.0));
        assert_eq!(parse_secs("1h"), Ok(3600.0));
        assert!(parse_secs("ten").is_err());
        assert!(parse_secs("-1s").is_err());
        let a = Args::try_parse_from(["loadgen", "hostile", "--duration", "8s", "--rounds", "3"])
            .unwrap();
        assert_eq!(a.scenario(), ScenarioName::Hostile);
        assert_eq!((a.duration, a.rounds), (8.0, 3));
    }

    #[test]
    fn targets() {
        let t = parse_target("nats://127.0.0.1").unwrap();
        assert_eq!(t.protocol, Protocol::Nats);
        assert_eq!(t.addr.port(), 4222);
        let t = parse_target("json://localhost:7500/").unwrap();
        assert_eq!(t.addr.to_string(), "127.0.0.1:7500");
        assert!(parse_target("json://10.0.0.1:7400").is_err());
        assert!(parse_target("ftp://127.0.0.1:21").is_err());
        assert!(parse_target("127.0.0.1:7400").is_err());
    }

    #[test]
    fn scenario_positional_or_flag() {
        let a = Args::try_parse_from(["loadgen", "fanout", "-n", "3"]).unwrap();
        assert_eq!(a.scenario(), ScenarioName::Fanout);
        let a = Args::try_parse_from(["loadgen", "--scenario", "pairs"]).unwrap();
        assert_eq!(a.scenario(), ScenarioName::Pairs);
        let a = Args::try_parse_from(["loadgen", "--clients", "10000"]).unwrap();
        assert_eq!(a.scenario(), ScenarioName::Clients);
        assert_eq!(a.clients, Some(10_000));
        assert_eq!(a.token, None);
        let a = Args::try_parse_from(["loadgen", "--token", "s3cret"]).unwrap();
        assert_eq!(a.token.as_deref(), Some("s3cret"));
    }
}
