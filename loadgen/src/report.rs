//! The result of one run: a [`Record`] printed as a human table on stdout and appended as
//! one JSON line to `--json FILE`. Owns presentation only; numbers come from scenarios.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// Scenario parameters as given (after defaults).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Params {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Channels used.
    pub channels: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Messages in flight per publisher (windowed scenarios).
    pub window: Option<u64>,
    /// Messages per second per publisher (latency).
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration: f64,
    /// Warm-up seconds.
    pub warmup: f64,
    /// Worker threads.
    pub threads: usize,
    /// Source addresses used.
    pub sources: Vec<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub samples: u64,
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
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of `hist`; `None` when it is empty.
    pub fn of(hist: &Histogram<u64>) -> Option<Latency> {
        if hist.is_empty() {
            return None;
        }
        Some(Latency {
            samples: hist.len(),
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        })
    }
}

/// Outcome of the `conns` scenario's limit search.
#[derive(Debug, Clone, Serialize)]
pub struct ConnLimit {
    /// Connections held when the ramp stopped.
    pub reached: usize,
    /// Connections asked for.
    pub wanted: usize,
    /// Connection attempts that failed (in flight when the limit was hit).
    pub failed: usize,
    /// What stopped the ramp (`None`: reached --clients).
    pub stopped_by: Option<String>,
    /// The OS error or server reply.
    pub error: Option<String>,
    /// Broker RSS growth per connection, bytes.
    pub rss_per_conn: Option<f64>,
    /// Subscribers targeted by the final publish check.
    pub probe_sent: usize,
    /// Of those, how many received their message.
    pub probe_received: u64,
}

/// Outcome of the `propagation` scenario (the delays themselves are in
/// [`Record::latency_us`]).
#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    /// Trials asked for.
    pub trials: usize,
    /// Trials whose subscriber received a probe.
    pub completed: usize,
    /// Trials that gave up waiting.
    pub timeouts: usize,
    /// Microseconds between probes: the resolution of every delay.
    pub probe_interval_us: u64,
    /// Probes published in all trials.
    pub probes_sent: u64,
    /// Median time from SUBSCRIBE sent to SUBSCRIBED received, microseconds (the local
    /// subscription round trip, for comparison).
    pub subscribe_rtt_p50_us: u64,
}

/// One run, as reported.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Record {
    /// Scenario name.
    pub scenario: String,
    /// Target URL (publishers).
    pub target: String,
    /// Where subscribers connected, when not the target (`--sub-target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_target: Option<String>,
    /// Seconds spent waiting for interest to cross federation links before publishing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interest_wait_secs: Option<f64>,
    /// Unix time of the end of the run.
    pub unix_time: u64,
    /// Parameters.
    pub params: Params,
    /// Connections confirmed.
    pub connections: usize,
    /// Seconds to connect and subscribe them.
    pub connect_secs: f64,
    /// Connections confirmed per second.
    pub connect_rate: f64,
    /// Messages published in the measured window.
    pub published: u64,
    /// Deliveries of those messages.
    pub delivered: u64,
    /// Published messages per second.
    pub published_per_sec: f64,
    /// Delivered messages per second (the headline number).
    pub delivered_per_sec: f64,
    /// End-to-end latency in microseconds (from the intended send time when paced).
    pub latency_us: Option<Latency>,
    /// Errors (setup failures, server errors, disconnects).
    pub errors: u64,
    /// The first error texts.
    pub error_samples: Vec<String>,
    /// Deliveries that never arrived.
    pub loss: u64,
    /// Deliveries out of order or duplicated.
    pub reorder: u64,
    /// loadgen CPU seconds during the measured window.
    pub loadgen_cpu_secs: f64,
    /// Broker CPU seconds during the measured window (with --broker-pid).
    pub broker_cpu_secs: Option<f64>,
    /// Broker resident memory at the end, bytes (with --broker-pid).
    pub broker_rss_bytes: Option<u64>,
    /// `conns` scenario only.
    pub conns: Option<ConnLimit>,
    /// `propagation` scenario only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Record {
    /// Writes the human-readable table.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let p = &self.params;
        match &self.sub_target {
            Some(sub) => writeln!(
                out,
                "== {} -> {} (subscribers on {sub})",
                self.scenario, self.target
            )?,
            None => writeln!(out, "== {} -> {}", self.scenario, self.target)?,
        }
        if let Some(secs) = self.interest_wait_secs {
            writeln!(out, "  {:<12} propagated in {:.3} s", "interest", secs)?;
        }
        let mut shape = format!(
            "subscribers {}  publishers {}  channels {}  payload {} B",
            p.subscribers, p.publishers, p.channels, p.payload
        );
        if let Some(w) = p.window {
            shape.push_str(&format!("  window {w}"));
        }
        if let Some(r) = p.rate {
            shape.push_str(&format!("  rate {}/s", si(r)));
        }
        if self.conns.is_some() {
            shape.push_str(&format!("  ramp {:.1}s  threads {}", p.duration, p.threads));
        } else {
            shape.push_str(&format!(
                "  {}s (+{}s warm-up)  threads {}",
                p.duration, p.warmup, p.threads
            ));
        }
        writeln!(out, "  {shape}")?;
        writeln!(
            out,
            "  {:<12} {} in {:.2} s ({}/s)",
            "connect",
            self.connections,
            self.connect_secs,
            si(self.connect_rate)
        )?;
        if let Some(p) = &self.propagation {
            writeln!(
                out,
                "  {:<12} {} of {} trials ({} timed out), probe every {} us, {} probes",
                "trials", p.completed, p.trials, p.timeouts, p.probe_interval_us, p.probes_sent
            )?;
            writeln!(
                out,
                "  {:<12} local SUBSCRIBE round trip p50 {} us",
                "subscribe", p.subscribe_rtt_p50_us
            )?;
            if let Some(l) = &self.latency_us {
                writeln!(
                    out,
                    "  {:<12} p50 {}  p90 {}  p99 {}  max {}  (us from SUBSCRIBED to first probe)",
                    "propagation", l.p50, l.p90, l.p99, l.max
                )?;
            }
        } else if self.conns.is_none() {
            writeln!(
                out,
                "  {:<12} {:>10} msgs/s  ({} msgs)",
                "published",
                si(self.published_per_sec),
                self.published
            )?;
            writeln!(
                out,
                "  {:<12} {:>10} msgs/s  ({} msgs)",
                "delivered",
                si(self.delivered_per_sec),
                self.delivered
            )?;
        }
        match &self.latency_us {
            Some(_) if self.propagation.is_some() => {}
            Some(l) => writeln!(
                out,
                "  {:<12} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (us, {} samples, {})",
                "latency",
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                l.samples,
                if p.rate.is_some() {
                    "from each message's intended send time: corrected for coordinated omission"
                } else {
                    "from the actual send time: windowed, not corrected for coordinated omission"
                }
            )?,
            None if self.conns.is_none() && self.propagation.is_none() => {
                writeln!(out, "  {:<12} no samples", "latency")?
            }
            None => {}
        }
        writeln!(
            out,
            "  {:<12} loss {}  reorder {}  errors {}",
            "integrity", self.loss, self.reorder, self.errors
        )?;
        for e in &self.error_samples {
            writeln!(out, "  {:<12} {e}", "")?;
        }
        let broker_cpu = self
            .broker_cpu_secs
            .map_or("? (pass --broker-pid)".to_string(), |c| {
                // Both figures are percent of ONE core; the machine's total is
                // 100% per core.
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!(
                    "{c:.2} s ({:.0}% of a core); together {:.0}% of a core (all {cores} cores: {}%)",
                    100.0 * c / p.duration.max(1e-9),
                    100.0 * (c + self.loadgen_cpu_secs) / p.duration.max(1e-9),
                    100 * cores
                )
            });
        writeln!(
            out,
            "  {:<12} loadgen {:.2} s ({:.0}% of a core)  broker {broker_cpu}",
            "cpu",
            self.loadgen_cpu_secs,
            100.0 * self.loadgen_cpu_secs / p.duration.max(1e-9)
        )?;
        if let Some(rss) = self.broker_rss_bytes {
            writeln!(out, "  {:<12} broker {}", "rss", mib(rss))?;
        }
        if let Some(c) = &self.conns {
            writeln!(
                out,
                "  {:<12} {} of {} connections held ({} attempts failed)",
                "conns", c.reached, c.wanted, c.failed
            )?;
            match (&c.stopped_by, &c.error) {
                (Some(by), Some(err)) => writeln!(out, "  {:<12} {by}: {err}", "stopped by")?,
                (Some(by), None) => writeln!(out, "  {:<12} {by}", "stopped by")?,
                _ => writeln!(out, "  {:<12} nothing (reached --clients)", "stopped by")?,
            }
            if let Some(per) = c.rss_per_conn {
                writeln!(
                    out,
                    "  {:<12} {:.0} B broker RSS per connection",
                    "memory", per
                )?;
            }
            writeln!(
                out,
                "  {:<12} {}/{} random subscribers received a publish",
                "probe", c.probe_received, c.probe_sent
            )?;
        }
        Ok(())
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
    fn table_and_json_line() {
        let mut hist = crate::engine::worker::latency_histogram();
        for v in 1..=1000u64 {
            hist.record(v).unwrap_or_default();
        }
        let record = Record {
            scenario: "fanout".into(),
            latency_us: Latency::of(&hist),
            delivered_per_sec: 2_500_000.0,
            ..Record::default()
        };
        let l = record.latency_us.as_ref().map(|l| (l.p50, l.max));
        assert_eq!(l, Some((500, 1000)));
        let mut text = Vec::new();
        record.print(&mut text).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("2.50M msgs/s"), "{text}");
        assert!(
            text.contains("not corrected for coordinated omission"),
            "{text}"
        );
        let json = serde_json::to_value(&record).unwrap_or_default();
        assert_eq!(json["latency_us"]["p99"], 990);
        // A paced run counts from each message's intended time, and says so.
        let paced = Record {
            params: Params {
                rate: Some(10_000.0),
                ..Params::default()
            },
            ..record
        };
        let mut text = Vec::new();
        paced.print(&mut text).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("intended send time: corrected for coordinated omission"),
            "{text}"
        );
    }
}
