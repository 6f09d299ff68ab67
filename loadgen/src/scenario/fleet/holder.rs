//! A `fleet` worker process: holds its share of the clients (global indices
//! `START..START+COUNT`, client `i` subscribed to channel `PREFIX.i` on broker
//! `i mod brokers` from source address `i mod sources`) on the ordinary engine, then
//! answers its parent (see [`wire`](super::wire)) until told to exit or until its stdin
//! closes. It never publishes and never measures memory: the parent does both.

use super::wire::{Command, Report};
use crate::cli::Args;
use crate::engine::plan::{Pacing, Plan};
use crate::engine::shared::Shared;
use crate::engine::Engine;
use crate::scenario::{channel, Common, ScenarioError};
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Failures a worker passes on to its parent (the first ones; more say nothing new).
const FAILURES_SHOWN: usize = 5;

/// Which clients one worker process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Global index of its first client.
    pub start: usize,
    /// Number of clients.
    pub count: usize,
}

impl Share {
    /// Parses `START:COUNT` (the hidden `--fleet-worker` flag).
    pub fn parse(text: &str) -> Result<Share, ScenarioError> {
        let bad = || ScenarioError::Usage(format!("--fleet-worker {text:?} is not START:COUNT"));
        let (start, count) = text.split_once(':').ok_or_else(bad)?;
        Ok(Share {
            start: start.trim().parse().map_err(|_| bad())?,
            count: count.trim().parse().map_err(|_| bad())?,
        })
    }

    /// The `--fleet-worker` value for this share.
    pub fn flag(&self) -> String {
        format!("{}:{}", self.start, self.count)
    }

    /// Global indices of its clients.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.count
    }

    /// Worker `k` of `processes` splitting `clients`: contiguous, sizes differ by at
    /// most one.
    pub fn of(k: usize, processes: usize, clients: usize) -> Share {
        let start = k * clients / processes;
        let end = (k + 1) * clients / processes;
        Share {
            start,
            count: end - start,
        }
    }
}

/// `items` rotated left by `by`, so element `j` of the result is `items[(by + j) % len]`.
fn rotated<T: Clone>(items: &[T], by: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = by % items.len();
    items[k..].iter().chain(&items[..k]).cloned().collect()
}

/// The engine plan of one share: one idle subscriber per channel, placed so that global
/// client `i` uses broker `i mod brokers` and source `i mod sources` whichever worker
/// holds it.
pub fn plan(args: &Args, common: &Common, share: Share, threads: usize) -> Plan {
    let brokers: Vec<SocketAddr> = common.sub_targets.iter().map(|t| t.addr).collect();
    let mut plan = Plan::new(common.sub_targets[0], threads, Pacing::Idle, args.payload);
    plan.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    plan.connecting = args.connecting.max(1);
    // Group g of this plan is global client start + g; add_group places subscriber 0 of
    // group g on sub_addrs[g % len].
    plan.sub_addrs = rotated(&brokers, share.start);
    for i in share.range() {
        plan.add_group(channel(args, i), 0, 1, None);
    }
    plan.finish(&rotated(&args.source, share.start));
    plan
}

/// Runs one worker process for the share `spec` (`START:COUNT`); returns when the
/// parent says exit or goes away.
pub fn run(args: &Args, spec: &str) -> Result<(), ScenarioError> {
    die_with_parent();
    let share = Share::parse(spec)?;
    let common = Common::from_args(args)?;
    if let Some(token) = &args.token {
        crate::adapter::json::set_token(token);
    }
    let threads = args.threads.unwrap_or(1).max(1);
    let engine = Engine::start(plan(args, &common, share, threads))?;
    let setup = engine.wait_setup();
    let shared = engine.shared();
    let not_held = share
        .range()
        .zip(&shared.conn_ready)
        .filter(|(_, ready)| !ready.load(Ordering::SeqCst))
        .map(|(i, _)| i)
        .collect();
    send(&Report::Ready {
        ready: setup.ready,
        failed: setup.failed,
        secs: setup.secs,
        not_held,
        failures: setup
            .failures
            .iter()
            .take(FAILURES_SHOWN)
            .map(|f| f.to_string())
            .collect(),
    })?;
    // EOF or a read error means the parent is gone: leave as if told to exit.
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match Command::parse(&line) {
            Some(Command::Counts) => send(&counts(shared, share))?,
            Some(Command::Exit) => break,
            None => eprintln!("loadgen fleet worker: unknown command {line:?}"),
        }
    }
    let totals = engine.finish();
    send(&Report::Done {
        errors: totals.errors,
        foreign: totals.foreign,
        error_samples: totals.error_samples,
    })
}

/// The share's per-connection probe and check counts (nonzero only), by global index.
fn counts(shared: &Shared, share: Share) -> Report {
    let nonzero = |per_conn: &[std::sync::atomic::AtomicU32]| -> Vec<(usize, u32)> {
        share
            .range()
            .zip(per_conn)
            .map(|(i, n)| (i, n.load(Ordering::SeqCst)))
            .filter(|&(_, n)| n > 0)
            .collect()
    };
    Report::Counts {
        held: shared
            .conn_ready
            .iter()
            .filter(|r| r.load(Ordering::SeqCst))
            .count(),
        received: shared.received.load(Ordering::SeqCst),
        probed: nonzero(&shared.conn_probed),
        checked: nonzero(&shared.conn_checked),
    }
}

/// Writes one report line to stdout and flushes it.
fn send(report: &Report) -> Result<(), ScenarioError> {
    let mut out = io::stdout().lock();
    out.write_all(report.to_line().as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Asks the kernel to kill this process when its parent dies, so a parent killed by
/// SIGKILL leaves no worker holding thousands of sockets. (A parent that exits
/// normally closes our stdin, which ends the worker too.)
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and affects only this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Role;
    use clap::Parser;

    #[test]
    fn shares_cover_every_client_once() {
        for (processes, clients) in [(1, 10), (3, 10), (7, 100_000), (4, 3)] {
            let mut next = 0;
            for k in 0..processes {
                let share = Share::of(k, processes, clients);
                assert_eq!(share.start, next);
                assert!(share.count.abs_diff(clients / processes) <= 1);
                assert_eq!(Share::parse(&share.flag()).ok(), Some(share));
                next += share.count;
            }
            assert_eq!(next, clients);
        }
        assert!(Share::parse("12").is_err());
        assert!(Share::parse("a:1").is_err());
    }

    /// Client i uses broker i mod 3 and source i mod 2 and subscribes to PREFIX.i,
    /// whichever share holds it.
    #[test]
    fn placement_does_not_depend_on_the_share() {
        let args = Args::try_parse_from([
            "loadgen",
            "fleet",
            "--target",
            "json://127.0.0.1:9001,json://127.0.0.1:9002,json://127.0.0.1:9003",
            "--source",
            "127.0.0.2,127.0.0.3",
            "--channel-prefix",
            "f",
        ])
        .unwrap();
        let common = Common::from_args(&args).unwrap();
        for share in [
            Share::of(0, 3, 10),
            Share::of(1, 3, 10),
            Share::of(2, 3, 10),
        ] {
            let plan = plan(&args, &common, share, 2);
            assert_eq!(plan.conns.len(), share.count);
            for (j, conn) in plan.conns.iter().enumerate() {
                let i = share.start + j;
                let Role::Subscriber { group } = conn.role else {
                    panic!("a fleet plan has only subscribers");
                };
                assert_eq!(
                    plan.groups[group as usize].channel,
                    format!("f.{i}").as_bytes()
                );
                assert_eq!(conn.addr.port(), 9001 + (i % 3) as u16);
                let source = conn.source.map(|s| s.to_string());
                assert_eq!(source.as_deref(), Some(["127.0.0.2", "127.0.0.3"][i % 2]));
            }
        }
    }
}
