//! What one `fleet` run found: the [`FleetRecord`], printed as a short summary on stdout
//! and appended as one JSON line to `--json FILE`. Owns presentation and the per-client
//! arithmetic only; the numbers come from the parent (`fleet::run`).

use crate::procinfo::MachineMemory;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// One broker as the run saw it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BrokerView {
    /// Its address.
    pub addr: String,
    /// Its name (`server` in `STATS`), when it answers `STATS`.
    pub name: Option<String>,
    /// Its PID (`--broker-pids`).
    pub pid: Option<u32>,
    /// Fleet clients it held.
    pub clients: usize,
    /// `VmRSS` before the workers started, bytes.
    pub rss_before: Option<u64>,
    /// `VmRSS` with every client held and interest propagated, bytes.
    pub rss_after: Option<u64>,
    /// `connections` in `STATS` then (clients, links, loadgen's observer and prober).
    pub connections: Option<u64>,
    /// `router.exact_channels` in `STATS` then: channels with a local subscriber or a
    /// link that asked for them.
    pub exact_channels: Option<u64>,
    /// Federation links up.
    pub links: Option<usize>,
    /// Interest entries learned from its links (sum of `interest_in`).
    pub interest_in: Option<u64>,
    /// Interest entries announced on its links (sum of `interest_out`).
    pub interest_out: Option<u64>,
    /// Checks published through it.
    pub checks_via: usize,
}

/// One worker process.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WorkerView {
    /// Global index of its first client.
    pub start: usize,
    /// Clients it was to hold.
    pub count: usize,
    /// Clients confirmed.
    pub ready: usize,
    /// Clients that failed.
    pub failed: usize,
    /// Seconds from its first connect to its last confirmation (its own clock).
    pub secs: f64,
    /// Seconds from the parent spawning the workers to this one reporting ready.
    pub ready_after: f64,
    /// Its `VmRSS` with every client held, bytes.
    pub rss: Option<u64>,
}

/// How the reachability check went.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProbeOutcome {
    /// Channels targeted (each has exactly one subscriber).
    pub targets: usize,
    /// Rounds of interest probes until every target had one.
    pub interest_rounds: usize,
    /// Targets whose first interest probe arrived within the first round's wait.
    pub first_round_reached: usize,
    /// Targets that received exactly one check.
    pub exactly_once: usize,
    /// Targets that received no check.
    pub lost: usize,
    /// Targets that received more than one check.
    pub duplicated: usize,
    /// Checks that arrived at connections that were not targeted.
    pub misdelivered_checks: u64,
    /// Interest probes that arrived at connections that were not targeted.
    pub misdelivered_probes: u64,
    /// Messages that were neither probes nor checks.
    pub foreign: u64,
    /// A few targets that did not receive exactly one check (global indices).
    pub wrong_samples: Vec<usize>,
}

impl ProbeOutcome {
    /// Every target received exactly one check and nothing arrived anywhere else.
    pub fn passed(&self) -> bool {
        self.exactly_once == self.targets
            && self.misdelivered_checks == 0
            && self.misdelivered_probes == 0
            && self.foreign == 0
    }
}

/// One `fleet` run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetRecord {
    /// Always `fleet`.
    pub scenario: String,
    /// Unix time of the end of the run.
    pub unix_time: u64,
    /// Where clients connected, with what each broker held.
    pub brokers: Vec<BrokerView>,
    /// Brokers the checks were published through (`--target`).
    pub publish_via: Vec<String>,
    /// Worker processes.
    pub workers: Vec<WorkerView>,
    /// Event-loop threads per worker process.
    pub threads_per_worker: usize,
    /// Source addresses.
    pub sources: Vec<String>,
    /// Clients asked for.
    pub clients_wanted: usize,
    /// Clients confirmed (subscribed) after the ramp.
    pub clients_held: usize,
    /// Clients still held after the check.
    pub clients_held_at_end: usize,
    /// Connection attempts that failed.
    pub clients_failed: usize,
    /// The first failures.
    pub failures: Vec<String>,
    /// Seconds from spawning the workers to the last one reporting ready.
    pub connect_secs: f64,
    /// Clients held per second of `connect_secs`.
    pub connect_rate: f64,
    /// Seconds from the last worker's ready to every broker's router holding every
    /// channel (`None` when the brokers do not answer `STATS`).
    pub interest_secs: Option<f64>,
    /// Whether that happened before the deadline.
    pub interest_complete: Option<bool>,
    /// Machine memory before the workers started.
    pub machine_before: Option<MachineMemory>,
    /// Machine memory with every client held and interest propagated.
    pub machine_after: Option<MachineMemory>,
    /// Highest TCP buffer pages seen from the start to the memory reading (sampled
    /// about every 100 ms during the ramp and the interest wait).
    pub tcp_mem_pages_peak: Option<u64>,
    /// Bytes per page.
    pub page_size: u64,
    /// The check.
    pub probe: ProbeOutcome,
    /// Errors after setup, over all workers.
    pub errors: u64,
    /// The first error texts.
    pub error_samples: Vec<String>,
    /// Every client held to the end, interest complete, the check passed, no errors.
    pub passed: bool,
}

/// `after - before` divided by `n`, when both are known and `n > 0`.
fn per(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn bytes(v: Option<f64>) -> String {
    match v {
        Some(b) if b.abs() >= 10.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        Some(b) => format!("{b:.0} B"),
        None => "n/a".into(),
    }
}

impl FleetRecord {
    /// Sum of the brokers' `VmRSS` before and after, when every broker's PID is known.
    pub fn broker_rss(&self) -> Option<(u64, u64)> {
        let mut before = 0;
        let mut after = 0;
        for b in &self.brokers {
            before += b.rss_before?;
            after += b.rss_after?;
        }
        (!self.brokers.is_empty()).then_some((before, after))
    }

    /// Brokers' RSS growth per client held, bytes.
    pub fn broker_rss_per_client(&self) -> Option<f64> {
        let (b, a) = self.broker_rss()?;
        per(Some(b), Some(a), self.clients_held)
    }

    /// Machine-wide slab growth per client held, bytes (both ends of each connection).
    pub fn slab_per_client(&self) -> Option<f64> {
        per(
            self.machine_before.map(|m| m.slab),
            self.machine_after.map(|m| m.slab),
            self.clients_held,
        )
    }

    /// TCP buffer memory growth per client held, bytes.
    pub fn tcp_per_client(&self) -> Option<f64> {
        per(
            self.machine_before
                .map(|m| m.tcp_mem_pages * self.page_size),
            self.machine_after.map(|m| m.tcp_mem_pages * self.page_size),
            self.clients_held,
        )
    }

    /// Machine memory in use (`MemTotal - MemAvailable`) growth per client held, bytes.
    pub fn machine_per_client(&self) -> Option<f64> {
        per(
            self.machine_before.map(|m| m.used()),
            self.machine_after.map(|m| m.used()),
            self.clients_held,
        )
    }

    /// The worker processes' RSS per client held (whole processes), bytes.
    pub fn loadgen_rss_per_client(&self) -> Option<f64> {
        let total: Option<u64> = self.workers.iter().map(|w| w.rss).sum();
        per(Some(0), total, self.clients_held)
    }

    /// Writes the human-readable summary.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "== fleet: {} clients over {} brokers, {} worker processes x {} thread(s), sources {}",
            self.clients_wanted,
            self.brokers.len(),
            self.workers.len(),
            self.threads_per_worker,
            if self.sources.is_empty() {
                "default".to_string()
            } else {
                self.sources.join(",")
            }
        )?;
        writeln!(
            out,
            "  {:<12} {} of {} held in {:.2} s ({:.0}/s), {} failed; {} still held after the check",
            "connect",
            self.clients_held,
            self.clients_wanted,
            self.connect_secs,
            self.connect_rate,
            self.clients_failed,
            self.clients_held_at_end
        )?;
        for f in &self.failures {
            writeln!(out, "  {:<12} {f}", "failure")?;
        }
        for b in &self.brokers {
            let name = b.name.as_deref().unwrap_or("?");
            let rss = match (b.rss_before, b.rss_after) {
                (Some(x), Some(y)) => format!("rss {} -> {}", mib(x as f64), mib(y as f64)),
                _ => "rss n/a".into(),
            };
            let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
            writeln!(
                out,
                "  {:<12} {name} {}: {} clients, {rss}, channels {}, interest in {} out {}, links {}",
                "broker",
                b.addr,
                b.clients,
                opt(b.exact_channels),
                opt(b.interest_in),
                opt(b.interest_out),
                b.links.map_or("?".to_string(), |l| l.to_string()),
            )?;
        }
        match (self.interest_secs, self.interest_complete) {
            (Some(s), Some(true)) => writeln!(
                out,
                "  {:<12} every broker's router held every channel {s:.2} s after the last worker was ready",
                "interest"
            )?,
            (Some(s), _) => writeln!(
                out,
                "  {:<12} NOT every broker held every channel after {s:.1} s",
                "interest"
            )?,
            _ => writeln!(out, "  {:<12} not awaited (no STATS)", "interest")?,
        }
        if let Some((b, a)) = self.broker_rss() {
            writeln!(
                out,
                "  {:<12} brokers {} -> {} = {} per client (all brokers' VmRSS growth / clients)",
                "memory",
                mib(b as f64),
                mib(a as f64),
                bytes(self.broker_rss_per_client())
            )?;
        }
        if let (Some(b), Some(a)) = (self.machine_before, self.machine_after) {
            writeln!(
                out,
                "  {:<12} slab {} -> {} = {} per client; TCP pages {} -> {} (peak {}) = {} per client",
                "kernel",
                mib(b.slab as f64),
                mib(a.slab as f64),
                bytes(self.slab_per_client()),
                b.tcp_mem_pages,
                a.tcp_mem_pages,
                self.tcp_mem_pages_peak
                    .map_or("?".to_string(), |p| p.to_string()),
                bytes(self.tcp_per_client())
            )?;
            writeln!(
                out,
                "  {:<12} in use (MemTotal - MemAvailable) {} -> {} = {} per client",
                "machine",
                mib(b.used() as f64),
                mib(a.used() as f64),
                bytes(self.machine_per_client())
            )?;
        }
        writeln!(
            out,
            "  {:<12} workers' RSS {} per client (whole processes)",
            "loadgen",
            bytes(self.loadgen_rss_per_client())
        )?;
        let p = &self.probe;
        writeln!(
            out,
            "  {:<12} {} channels via random brokers: {} exactly once, {} lost, {} duplicated; \
             {} checks and {} probes at other connections, {} foreign; interest probes: {} round(s), {} reached in the first",
            "check",
            p.targets,
            p.exactly_once,
            p.lost,
            p.duplicated,
            p.misdelivered_checks,
            p.misdelivered_probes,
            p.foreign,
            p.interest_rounds,
            p.first_round_reached
        )?;
        if !p.wrong_samples.is_empty() {
            writeln!(out, "  {:<12} clients {:?}", "not once", p.wrong_samples)?;
        }
        writeln!(out, "  {:<12} {}", "errors", self.errors)?;
        for e in &self.error_samples {
            writeln!(out, "  {:<12} {e}", "")?;
        }
        writeln!(
            out,
            "  {:<12} {}",
            "result",
            if self.passed { "PASS" } else { "FAIL" }
        )
    }

    /// Appends the record as one JSON line to `path`.
    pub fn append_json(&self, path: &Path) -> io::Result<()> {
        let line = serde_json::to_string(self).map_err(io::Error::other)?;
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_figures() {
        let m = |slab, pages, available| MachineMemory {
            total: 1 << 34,
            available,
            slab,
            tcp_inuse: 0,
            tcp_mem_pages: pages,
        };
        let record = FleetRecord {
            clients_held: 1000,
            page_size: 4096,
            brokers: vec![
                BrokerView {
                    rss_before: Some(1_000_000),
                    rss_after: Some(1_200_000),
                    ..BrokerView::default()
                },
                BrokerView {
                    rss_before: Some(1_000_000),
                    rss_after: Some(1_100_000),
                    ..BrokerView::default()
                },
            ],
            machine_before: Some(m(10_000_000, 10, 1 << 33)),
            machine_after: Some(m(19_000_000, 260, (1 << 33) - 30_000_000)),
            workers: vec![WorkerView {
                rss: Some(500_000),
                ..WorkerView::default()
            }],
            ..FleetRecord::default()
        };
        assert_eq!(record.broker_rss_per_client(), Some(300.0));
        assert_eq!(record.slab_per_client(), Some(9000.0));
        assert_eq!(record.tcp_per_client(), Some(250.0 * 4096.0 / 1000.0));
        assert_eq!(record.machine_per_client(), Some(30_000.0));
        assert_eq!(record.loadgen_rss_per_client(), Some(500.0));
        let mut text = Vec::new();
        record.print(&mut text).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("300 B per client"), "{text}");
        assert!(text.contains("FAIL"), "{text}");
        let mut unknown = record.clone();
        unknown.brokers[1].rss_after = None;
        assert_eq!(unknown.broker_rss_per_client(), None);
    }
}
