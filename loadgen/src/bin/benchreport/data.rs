//! Reading what `scripts/bench.sh` collected: loadgen's JSON records (one file per
//! target), the machine facts in `meta.tsv`, the brokers' syscall counts per run and the
//! kernel memory sampled during `conns`; then grouping runs into cells and taking
//! medians. Owns no presentation.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Targets in the order tables and charts show them. `ours` is compared with the rest.
pub const LABELS: [&str; 5] = ["ours", "relay", "redis", "nats", "mosquitto"];

/// Errors while loading the results directory.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A JSON record did not parse.
    #[error("{path} line {line}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// No records at all.
    #[error("no records-*.jsonl files with records in {0}")]
    Empty(PathBuf),
}

/// Scenario parameters, as loadgen recorded them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Messages in flight per publisher.
    pub window: Option<u64>,
    /// Paced rate (latency scenario).
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration: f64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// The `conns` outcome.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnLimit {
    /// Connections held.
    pub reached: usize,
    /// Connections asked for.
    pub wanted: usize,
    /// What stopped the ramp, if anything.
    pub stopped_by: Option<String>,
    /// The OS error or server reply.
    pub error: Option<String>,
    /// Broker RSS growth per connection, bytes.
    pub rss_per_conn: Option<f64>,
    /// Probe publishes sent.
    pub probe_sent: usize,
    /// Probe publishes received.
    pub probe_received: u64,
}

/// The fields of one loadgen record the report uses (unknown fields are ignored, so
/// loadgen may grow without breaking the report).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    /// Scenario name.
    pub scenario: String,
    /// Parameters.
    pub params: Params,
    /// Connections confirmed.
    pub connections: usize,
    /// Connections per second.
    pub connect_rate: f64,
    /// Deliveries in the measured window.
    pub delivered: u64,
    /// Delivered msgs/s.
    pub delivered_per_sec: f64,
    /// Published msgs/s.
    pub published_per_sec: f64,
    /// Latency percentiles.
    pub latency_us: Option<Latency>,
    /// Errors.
    pub errors: u64,
    /// First error texts.
    pub error_samples: Vec<String>,
    /// Lost deliveries.
    pub loss: u64,
    /// Reordered deliveries.
    pub reorder: u64,
    /// loadgen CPU seconds in the window.
    pub loadgen_cpu_secs: f64,
    /// Broker CPU seconds in the window.
    pub broker_cpu_secs: Option<f64>,
    /// Broker RSS at the end, bytes.
    pub broker_rss_bytes: Option<u64>,
    /// `conns` only.
    pub conns: Option<ConnLimit>,
}

/// One run: a record plus what bench.sh measured around it.
#[derive(Debug, Clone)]
pub struct Run {
    /// Target label (`ours`, `redis`, ...).
    pub label: String,
    /// The record.
    pub rec: Record,
    /// Broker syscalls (all threads, from `perf stat -e raw_syscalls:sys_enter`) during
    /// the whole loadgen run.
    pub syscalls: Option<u64>,
}

impl Run {
    /// True when the run lost, reordered or failed anything.
    pub fn unclean(&self) -> bool {
        self.rec.loss > 0 || self.rec.reorder > 0 || self.rec.errors > 0
    }

    /// Broker CPU nanoseconds per delivered message.
    pub fn cpu_ns_per_msg(&self) -> Option<f64> {
        let cpu = self.rec.broker_cpu_secs?;
        let msgs = self.rec.delivered_per_sec * self.rec.params.duration;
        (msgs > 0.0).then(|| cpu * 1e9 / msgs)
    }

    /// Broker syscalls per delivered message. The count covers the whole run (connect,
    /// warm-up, window, drain) while the divisor is the measured rate times warm-up plus
    /// window, so this is an approximation (it slightly overstates).
    pub fn syscalls_per_msg(&self, warmup: f64) -> Option<f64> {
        let n = self.syscalls?;
        let d = self.rec.params.duration;
        let msgs = self.rec.delivered_per_sec * (d + warmup);
        (msgs > 0.0).then(|| n as f64 / msgs)
    }
}

/// Which measurement a run belongs to: runs with equal keys are repetitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    /// Scenario name.
    pub scenario: String,
    /// Subscribers (fanout, pairs, latency) or publishers (fanin).
    pub n: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Paced rate (latency), msgs/s.
    pub rate: u64,
}

impl CellKey {
    /// The key of `rec`.
    pub fn of(rec: &Record) -> CellKey {
        let n = match rec.scenario.as_str() {
            "fanin" => rec.params.publishers,
            _ => rec.params.subscribers,
        };
        CellKey {
            scenario: rec.scenario.clone(),
            n,
            payload: rec.params.payload,
            rate: rec.params.rate.unwrap_or(0.0).round() as u64,
        }
    }
}

impl fmt::Display for CellKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scenario.as_str() {
            "fanout" => write!(f, "fanout 1 → {}, {}", self.n, bytes(self.payload)),
            "fanin" => write!(f, "fanin {} → 1, {}", self.n, bytes(self.payload)),
            "pairs" => write!(f, "pairs {}, {}", self.n, bytes(self.payload)),
            "latency" => write!(
                f,
                "{} msgs/s → {} subscribers",
                si(self.rate as f64),
                self.n
            ),
            other => write!(f, "{other} {}", self.n),
        }
    }
}

/// `16 B`, `1 KiB`.
pub fn bytes(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// `2.50M`, `120k`, `950`.
pub fn si(v: f64) -> String {
    if v >= 999_500.0 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Everything in one results directory.
#[derive(Debug, Default)]
pub struct Results {
    /// `meta.tsv`: machine facts, versions, start commands, settings.
    pub meta: BTreeMap<String, String>,
    /// Every run, in file order per label.
    pub runs: Vec<Run>,
    /// Kernel memory around `conns`, per label: (slab KiB before, slab KiB peak,
    /// TCP pages before, TCP pages peak).
    pub kernel_mem: BTreeMap<String, (u64, u64, u64, u64)>,
    /// The exact loadgen command lines, in order.
    pub commands: Vec<String>,
}

fn read(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional(path: &Path) -> Result<String, LoadError> {
    if path.exists() {
        read(path)
    } else {
        Ok(String::new())
    }
}

impl Results {
    /// Loads `dir` as written by `scripts/bench.sh`.
    pub fn load(dir: &Path) -> Result<Results, LoadError> {
        let mut res = Results::default();
        for line in read_optional(&dir.join("meta.tsv"))?.lines() {
            if let Some((k, v)) = line.split_once('\t') {
                res.meta.insert(k.to_string(), v.to_string());
            }
        }
        // (label, 1-based line) -> syscalls
        let mut sys: BTreeMap<(String, usize), u64> = BTreeMap::new();
        for line in read_optional(&dir.join("syscalls.tsv"))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [label, n, count] = f[..] {
                if let (Ok(n), Ok(count)) = (n.parse(), count.parse()) {
                    sys.insert((label.to_string(), n), count);
                }
            }
        }
        for line in read_optional(&dir.join("kernelmem.tsv"))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() == 6 {
                let n: Vec<u64> = f[2..].iter().filter_map(|s| s.parse().ok()).collect();
                if let [a, b, c, d] = n[..] {
                    res.kernel_mem.insert(f[0].to_string(), (a, b, c, d));
                }
            }
        }
        res.commands = read_optional(&dir.join("commands.sh"))?
            .lines()
            .map(str::to_string)
            .collect();
        for label in LABELS {
            let path = dir.join(format!("records-{label}.jsonl"));
            for (i, line) in read_optional(&path)?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let rec: Record = serde_json::from_str(line).map_err(|source| LoadError::Json {
                    path: path.clone(),
                    line: i + 1,
                    source,
                })?;
                res.runs.push(Run {
                    label: label.to_string(),
                    rec,
                    syscalls: sys.get(&(label.to_string(), i + 1)).copied(),
                });
            }
        }
        if res.runs.is_empty() {
            return Err(LoadError::Empty(dir.to_path_buf()));
        }
        Ok(res)
    }

    /// A meta value, or `"?"`.
    pub fn meta(&self, key: &str) -> &str {
        self.meta.get(key).map_or("?", String::as_str)
    }

    /// `text` with the repository root (meta `root`) removed from paths.
    pub fn short(&self, text: &str) -> String {
        match self.meta.get("root") {
            Some(root) if !root.is_empty() => text.replace(&format!("{root}/"), ""),
            _ => text.to_string(),
        }
    }

    /// A numeric meta value.
    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        self.meta.get(key)?.trim().parse().ok()
    }

    /// Labels that have at least one run, in [`LABELS`] order.
    pub fn labels(&self) -> Vec<&'static str> {
        LABELS
            .into_iter()
            .filter(|l| self.runs.iter().any(|r| r.label == *l))
            .collect()
    }

    /// Cells of `scenario` (sorted by key).
    pub fn cells(&self, scenario: &str) -> Vec<CellKey> {
        let mut keys: Vec<CellKey> = self
            .runs
            .iter()
            .filter(|r| r.rec.scenario == scenario)
            .map(|r| CellKey::of(&r.rec))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The runs of `label` in `cell`.
    pub fn runs_of(&self, cell: &CellKey, label: &str) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|r| r.label == label && CellKey::of(&r.rec) == *cell)
            .collect()
    }

    /// The median of `label`'s runs in `cell`, by delivered msgs/s (with an even count,
    /// the lower of the two middle runs, so the figure is always one real run).
    pub fn median(&self, cell: &CellKey, label: &str) -> Option<Summary<'_>> {
        let mut runs = self.runs_of(cell, label);
        if runs.is_empty() {
            return None;
        }
        runs.sort_by(|a, b| a.rec.delivered_per_sec.total_cmp(&b.rec.delivered_per_sec));
        let count = runs.len();
        let unclean = runs.iter().filter(|r| r.unclean()).count();
        Some(Summary {
            run: runs[(count - 1) / 2],
            count,
            unclean,
        })
    }

    /// Median of each latency percentile over `label`'s runs in `cell`.
    pub fn latency_median(&self, cell: &CellKey, label: &str) -> Option<Latency> {
        let runs = self.runs_of(cell, label);
        let lats: Vec<&Latency> = runs
            .iter()
            .filter_map(|r| r.rec.latency_us.as_ref())
            .collect();
        if lats.is_empty() {
            return None;
        }
        let med = |f: fn(&Latency) -> u64| {
            let mut v: Vec<u64> = lats.iter().map(|l| f(l)).collect();
            v.sort_unstable();
            v[(v.len() - 1) / 2]
        };
        Some(Latency {
            p50: med(|l| l.p50),
            p90: med(|l| l.p90),
            p99: med(|l| l.p99),
            p999: med(|l| l.p999),
            max: med(|l| l.max),
        })
    }
}

/// The median run of a cell and how many runs it was chosen from.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    /// The median run.
    pub run: &'a Run,
    /// Runs in the cell.
    pub count: usize,
    /// Runs with loss, reordering or errors.
    pub unclean: usize,
}

impl Summary<'_> {
    /// Delivered msgs/s of the median run.
    pub fn rate(&self) -> f64 {
        self.run.rec.delivered_per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, n: usize, rate: f64) -> Run {
        Run {
            label: label.into(),
            rec: Record {
                scenario: "fanout".into(),
                params: Params {
                    subscribers: n,
                    payload: 16,
                    duration: 1.0,
                    ..Params::default()
                },
                delivered_per_sec: rate,
                ..Record::default()
            },
            syscalls: None,
        }
    }

    #[test]
    fn median_is_a_real_run() {
        let res = Results {
            runs: vec![
                run("ours", 10, 3.0),
                run("ours", 10, 1.0),
                run("ours", 10, 2.0),
                run("ours", 1000, 9.0),
                run("ours", 1000, 7.0),
            ],
            ..Results::default()
        };
        let cells = res.cells("fanout");
        assert_eq!(cells.len(), 2);
        let m = res.median(&cells[0], "ours").map(|s| (s.rate(), s.count));
        assert_eq!(m, Some((2.0, 3)));
        let m = res.median(&cells[1], "ours").map(|s| s.rate());
        assert_eq!(m, Some(7.0));
        assert!(res.median(&cells[0], "nats").is_none());
    }

    #[test]
    fn cell_names() {
        let r = run("ours", 1000, 1.0);
        assert_eq!(CellKey::of(&r.rec).to_string(), "fanout 1 → 1000, 16 B");
        assert_eq!(si(2_500_000.0), "2.50M");
        assert_eq!(bytes(1024), "1 KiB");
    }
}
