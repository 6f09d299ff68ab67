//! The `fleet` scenario: more simultaneous subscribed clients than one process has file
//! descriptors for, across a hub of brokers. The parent spawns `--processes` copies of
//! its own executable ([`holder`], managed by [`workers`]), each holding a contiguous
//! share of `--clients` idle subscribers, one channel each, spread over the brokers and
//! `--source` addresses. It waits until every broker's router holds every channel
//! (interest has crossed the links), measures the brokers' RSS, the kernel's and the
//! machine's memory against a reading taken before the workers started, then publishes
//! a check to `--probe` random channels, each through a random broker, and requires
//! each check to arrive exactly once, at its own subscriber and nowhere else
//! ([`probe`]).
//!
//! The parent never holds client connections itself (only one prober per `--target`
//! and one `STATS` observer per broker), and stops every worker it started, on every
//! path. Every wait has a deadline.

pub mod holder;
mod probe;
use probe::ask_counts;
pub mod record;
pub mod wire;
pub mod workers;

use super::blocking::BlockingClient;
use super::observe::Observer;
use super::{Common, ScenarioError};
use crate::adapter::Protocol;
use crate::cli::{Args, Target};
use crate::procinfo;
use crate::stamp;
use holder::Share;
use record::{BrokerView, FleetRecord, WorkerView};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use thiserror::Error;
use wire::Report;
use workers::{WorkerError, Workers};

/// fds a worker keeps for itself (epoll, wakers, pipes, stdio).
const FD_RESERVE: u64 = 64;
/// Default number of clients.
const CLIENTS_DEFAULT: usize = 10_000;
/// How long the workers may take, in all, to connect and subscribe their clients.
const READY_DEADLINE: Duration = Duration::from_secs(300);
/// Pause between `STATS` polls while waiting for interest.
const INTEREST_POLL: Duration = Duration::from_millis(100);
/// Pause before reading memory (allocations of the last subscriptions settle), and
/// after the checks arrived (a duplicate would arrive meanwhile).
const QUIET: Duration = Duration::from_secs(1);
/// How long one question to the workers may take.
const COUNTS_DEADLINE: Duration = Duration::from_secs(30);
/// How long a round of interest probes waits for arrivals before repeating.
const ROUND_WAIT: Duration = Duration::from_millis(500);
/// Pause between questions to the workers while waiting for arrivals.
const COUNTS_POLL: Duration = Duration::from_millis(20);
/// Time a prober may take to connect or to get its PONG back.
const PROBER_WAIT: Duration = Duration::from_secs(10);
/// Client ids of the probers, above any worker's.
const PROBER_CLIENT_ID: u64 = 1 << 61;
/// Targets listed by name when they did not receive exactly one check.
const WRONG_SHOWN: usize = 10;

/// Why a `fleet` run could not finish.
#[derive(Debug, Error)]
pub enum FleetError {
    /// A worker process failed or did not answer.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A prober could not connect or publish.
    #[error("prober via {addr}: {source}")]
    Prober {
        /// The broker.
        addr: SocketAddr,
        /// What went wrong.
        source: io::Error,
    },
    /// A broker stopped answering `STATS`.
    #[error("STATS from {addr}: {source}")]
    Stats {
        /// The broker.
        addr: SocketAddr,
        /// What went wrong.
        source: io::Error,
    },
}

/// Runs the parent of a `fleet` run; `Ok(true)` when every check passed.
pub fn run(args: &Args) -> Result<bool, ScenarioError> {
    let common = Common::from_args(args)?;
    if common.target.protocol != Protocol::Json {
        return Err(ScenarioError::Usage(
            "fleet is for our broker: json:// targets only".into(),
        ));
    }
    if let Some(token) = &args.token {
        crate::adapter::json::set_token(token);
    }
    let wanted = args.clients.unwrap_or(CLIENTS_DEFAULT).max(1);
    let fd_cap = (procinfo::raise_fd_limit().saturating_sub(FD_RESERVE) as usize).max(1);
    let processes = args
        .processes
        .unwrap_or_else(|| wanted.div_ceil(fd_cap))
        .clamp(1, wanted);
    if wanted.div_ceil(processes) > fd_cap {
        return Err(ScenarioError::Usage(format!(
            "{processes} worker processes would hold {} clients each, over the fd limit \
             ({fd_cap} after a reserve of {FD_RESERVE}): use --processes {}",
            wanted.div_ceil(processes),
            wanted.div_ceil(fd_cap)
        )));
    }
    let brokers = common.sub_targets.clone();
    if !args.broker_pids.is_empty() && args.broker_pids.len() != brokers.len() {
        return Err(ScenarioError::Usage(format!(
            "--broker-pids has {} PIDs for {} brokers (give one per --sub-target/--target broker, in order)",
            args.broker_pids.len(),
            brokers.len()
        )));
    }
    // Brokers to watch: where clients are, then any other broker probes go through.
    let mut watched: Vec<Target> = brokers.clone();
    for t in &common.pub_targets {
        if !watched.contains(t) {
            watched.push(*t);
        }
    }
    Ok(Parent::new(args, common, brokers, watched)?.run(wanted, processes)?)
}

/// The parent's connections to the brokers.
struct Parent<'a> {
    args: &'a Args,
    common: Common,
    brokers: Vec<Target>,
    watched: Vec<Target>,
    probers: Vec<BlockingClient>,
    /// One per watched broker; `None` when they do not answer `STATS`.
    observers: Option<Vec<Observer>>,
}

impl<'a> Parent<'a> {
    /// Connects the probers and observers before any client, so no limit the clients
    /// reach can lock them out.
    fn new(
        args: &'a Args,
        common: Common,
        brokers: Vec<Target>,
        watched: Vec<Target>,
    ) -> Result<Parent<'a>, FleetError> {
        let mut probers = Vec::new();
        for (n, t) in common.pub_targets.iter().enumerate() {
            let client = BlockingClient::connect(*t, PROBER_CLIENT_ID + n as u64, PROBER_WAIT)
                .map_err(|source| FleetError::Prober {
                    addr: t.addr,
                    source,
                })?;
            probers.push(client);
        }
        let mut observers = Vec::new();
        for t in &watched {
            let answered = Observer::connect(*t, args.token.as_deref())
                .and_then(|mut o| o.stats_json().map(|_| o));
            match answered {
                Ok(o) => observers.push(o),
                Err(e) => {
                    eprintln!(
                        "loadgen fleet: {} does not answer STATS ({e}): interest is not \
                         awaited and brokers' tables are not reported",
                        t.addr
                    );
                    break;
                }
            }
        }
        let observers = (observers.len() == watched.len()).then_some(observers);
        Ok(Parent {
            args,
            common,
            brokers,
            watched,
            probers,
            observers,
        })
    }

    fn run(mut self, wanted: usize, processes: usize) -> Result<bool, FleetError> {
        let args = self.args;
        let base_channels = self.channels()?;
        let machine_before = procinfo::machine_memory();
        let pid_of = |b: usize| args.broker_pids.get(b).copied();
        let rss_before: Vec<Option<u64>> = (0..self.brokers.len())
            .map(|b| pid_of(b).and_then(procinfo::pid_rss_bytes))
            .collect();
        let mut tcp_peak = machine_before.map(|m| m.tcp_mem_pages);
        let mut sample = || {
            if let Some(m) = procinfo::machine_memory() {
                tcp_peak = Some(tcp_peak.unwrap_or(0).max(m.tcp_mem_pages));
            }
        };

        // The ramp: every worker connects its share and says so.
        let shares: Vec<Share> = (0..processes)
            .map(|k| Share::of(k, processes, wanted))
            .collect();
        let exe = std::env::current_exe().map_err(|e| WorkerError::Spawn {
            index: 0,
            source: e,
        })?;
        let t0 = Instant::now();
        let mut workers = Workers::spawn(&exe, &self.worker_args(), &shares)?;
        let mut ready_after = vec![0.0; processes];
        let readies = workers.collect(
            "connect their clients",
            READY_DEADLINE,
            |i, r| match r {
                Report::Ready { .. } => {
                    ready_after[i] = t0.elapsed().as_secs_f64();
                    Some(r)
                }
                _ => None,
            },
            &mut sample,
        )?;
        let connect_secs = ready_after.iter().copied().fold(0.0, f64::max);
        let mut not_held: HashSet<usize> = HashSet::new();
        let mut worker_views = Vec::new();
        let mut failures = Vec::new();
        let (mut held, mut failed) = (0, 0);
        for (i, r) in readies.into_iter().enumerate() {
            let Report::Ready {
                ready,
                failed: f,
                secs,
                not_held: missing,
                failures: fs,
            } = r
            else {
                continue;
            };
            held += ready;
            failed += f;
            not_held.extend(missing);
            failures.extend(distinct(fs).into_iter().map(|f| format!("worker {i}: {f}")));
            let share = workers.share(i);
            worker_views.push(WorkerView {
                start: share.start,
                count: share.count,
                ready,
                failed: f,
                secs,
                ready_after: ready_after[i],
                rss: None,
            });
        }
        eprintln!("loadgen fleet: {held} of {wanted} clients held after {connect_secs:.1} s");

        // Interest: every broker's router must hold every channel.
        let t_ready = Instant::now();
        let interest_complete = match self.observers.is_some() {
            true => Some(self.wait_interest(&base_channels, held, &mut sample)?),
            false => None,
        };
        let interest_secs = interest_complete.map(|_| t_ready.elapsed().as_secs_f64());
        std::thread::sleep(QUIET);

        // Memory with every client held.
        let machine_after = procinfo::machine_memory();
        if let Some(m) = machine_after {
            tcp_peak = Some(tcp_peak.unwrap_or(0).max(m.tcp_mem_pages));
        }
        let stats_after = self.stats_all()?;
        for (w, pid) in worker_views.iter_mut().zip(workers.pids()) {
            w.rss = procinfo::pid_rss_bytes(pid);
        }
        let mut views: Vec<BrokerView> = self
            .watched
            .iter()
            .enumerate()
            .map(|(b, t)| BrokerView {
                addr: t.addr.to_string(),
                pid: pid_of(b),
                rss_before: rss_before.get(b).copied().flatten(),
                rss_after: pid_of(b).and_then(procinfo::pid_rss_bytes),
                ..BrokerView::default()
            })
            .collect();
        if let Some(stats) = &stats_after {
            for (view, s) in views.iter_mut().zip(stats) {
                fill_from_stats(view, s);
            }
        }
        for i in (0..wanted).filter(|i| !not_held.contains(i)) {
            views[i % self.brokers.len()].clients += 1;
        }
        eprintln!("loadgen fleet: memory measured; checking reachability");

        // The check.
        let targets = self.pick_targets(wanted, &not_held);
        for t in &targets {
            let addr = self.common.pub_targets[t.via].addr;
            if let Some(v) = views.iter_mut().find(|v| v.addr == addr.to_string()) {
                v.checks_via += 1;
            }
        }
        let mut probe = self.check(&mut workers, &targets)?;
        let end = ask_counts(&mut workers)?;
        let done = workers.finish()?;
        let (mut errors, mut error_samples) = (0, Vec::new());
        for r in done {
            if let Report::Done {
                errors: e,
                foreign,
                error_samples: samples,
            } = r
            {
                errors += e;
                probe.foreign = probe.foreign.max(foreign);
                error_samples.extend(samples);
            }
        }
        error_samples.truncate(10);

        let mut record = FleetRecord {
            scenario: "fleet".into(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            brokers: views,
            publish_via: self
                .common
                .pub_targets
                .iter()
                .map(|t| t.addr.to_string())
                .collect(),
            workers: worker_views,
            threads_per_worker: args.threads.unwrap_or(1).max(1),
            sources: args.source.iter().map(|s| s.to_string()).collect(),
            clients_wanted: wanted,
            clients_held: held,
            clients_held_at_end: end.held,
            clients_failed: failed,
            failures,
            connect_secs,
            connect_rate: if connect_secs > 0.0 {
                held as f64 / connect_secs
            } else {
                0.0
            },
            interest_secs,
            interest_complete,
            machine_before,
            machine_after,
            tcp_mem_pages_peak: tcp_peak,
            page_size: procinfo::page_size(),
            probe,
            errors,
            error_samples,
            passed: false,
        };
        record.passed = held == wanted
            && end.held == held
            && interest_complete != Some(false)
            && record.probe.passed()
            && errors == 0;
        let mut stdout = io::stdout().lock();
        if let Err(e) = record.print(&mut stdout) {
            eprintln!("loadgen fleet: writing the summary: {e}");
        }
        if let Some(path) = &args.json {
            if let Err(e) = record.append_json(path) {
                eprintln!("loadgen fleet: appending to {}: {e}", path.display());
                return Ok(false);
            }
        }
        Ok(record.passed)
    }

    /// The flags every worker gets after `fleet --fleet-worker START:COUNT`.
    fn worker_args(&self) -> Vec<String> {
        let a = self.args;
        let mut out: Vec<String> = vec!["--target".into(), a.target.clone()];
        if let Some(sub) = &a.sub_target {
            out.extend(["--sub-target".into(), sub.clone()]);
        }
        if let Some(token) = &a.token {
            out.extend(["--token".into(), token.clone()]);
        }
        if !a.source.is_empty() {
            let list: Vec<String> = a.source.iter().map(|s| s.to_string()).collect();
            out.extend(["--source".into(), list.join(",")]);
        }
        out.extend([
            "--connect-timeout".into(),
            a.connect_timeout.to_string(),
            "--connecting".into(),
            a.connecting.to_string(),
            "--threads".into(),
            a.threads.unwrap_or(1).max(1).to_string(),
            "--channel-prefix".into(),
            a.channel_prefix.clone(),
            "--payload".into(),
            a.payload.to_string(),
        ]);
        out
    }

    /// Every watched broker's whole `STATS` reply, when they answer `STATS`.
    fn stats_all(&mut self) -> Result<Option<Vec<serde_json::Value>>, FleetError> {
        let Some(observers) = &mut self.observers else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (o, t) in observers.iter_mut().zip(&self.watched) {
            out.push(o.stats_json().map_err(|source| FleetError::Stats {
                addr: t.addr,
                source,
            })?);
        }
        Ok(Some(out))
    }

    /// Every watched broker's `router.exact_channels` (zeros without `STATS`).
    fn channels(&mut self) -> Result<Vec<u64>, FleetError> {
        Ok(match self.stats_all()? {
            Some(all) => all
                .iter()
                .map(|v| v["router"]["exact_channels"].as_u64().unwrap_or(0))
                .collect(),
            None => vec![0; self.watched.len()],
        })
    }

    /// Polls `STATS` until every watched broker's router holds `held` more channels than
    /// at the start; `Ok(false)` at the deadline.
    fn wait_interest(
        &mut self,
        base: &[u64],
        held: usize,
        sample: &mut impl FnMut(),
    ) -> Result<bool, FleetError> {
        let within = Duration::from_secs_f64(self.args.interest_timeout);
        let deadline = Instant::now() + within;
        loop {
            let now = self.channels()?;
            let short: Vec<String> = now
                .iter()
                .zip(base)
                .zip(&self.watched)
                .filter(|((n, b), _)| **n < **b + held as u64)
                .map(|((n, b), t)| format!("{} {}/{held}", t.addr, n.saturating_sub(*b)))
                .collect();
            if short.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "loadgen fleet: interest incomplete after {:.1} s: {}",
                    within.as_secs_f64(),
                    short.join(", ")
                );
                return Ok(false);
            }
            sample();
            std::thread::sleep(INTEREST_POLL);
        }
    }
}

/// The distinct texts of `all` in first-seen order, each with how often it occurred
/// when more than once (a worker's failures in flight at once often read alike).
fn distinct(all: Vec<String>) -> Vec<String> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for text in all {
        match out.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => out.push((text, 1)),
        }
    }
    out.into_iter()
        .map(|(t, n)| if n > 1 { format!("{t} (x{n})") } else { t })
        .collect()
}

/// Copies what `STATS` says about a broker into its view.
fn fill_from_stats(view: &mut BrokerView, stats: &serde_json::Value) {
    view.name = stats["server"].as_str().map(String::from);
    view.connections = stats["connections"].as_u64();
    view.exact_channels = stats["router"]["exact_channels"].as_u64();
    if let Some(links) = stats["links"].as_array() {
        view.links = Some(links.len());
        let sum = |key: &str| links.iter().filter_map(|l| l[key].as_u64()).sum();
        view.interest_in = Some(sum("interest_in"));
        view.interest_out = Some(sum("interest_out"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_listed_once_with_a_count() {
        let texts = ["a", "b", "a", "a"].map(String::from).to_vec();
        assert_eq!(distinct(texts), ["a (x3)", "b"]);
    }
}
