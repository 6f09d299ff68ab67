//! The `conns` scenario: ramp idle subscribed connections (each on its own channel) up to
//! --clients or until something fails, name the limit that stopped it, measure the
//! broker's RSS per connection, then check that a publish still reaches random
//! subscribers. The probe publisher is a plain blocking socket on this thread.

use super::{channel, Common, ScenarioError};
use crate::adapter::{Event, Protocol};
use crate::cli::{Args, Target};
use crate::engine::plan::{Pacing, Plan};
use crate::engine::shared::{FailKind, Failure};
use crate::engine::Engine;
use crate::procinfo::{self, CpuSample};
use crate::report::{ConnLimit, Params, Record};
use crate::stamp::{self, Stamp};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// fds loadgen keeps for itself (epoll, wakers, the probe socket, stdio, files).
const FD_RESERVE: u64 = 64;
/// How long the probe waits for its messages to arrive.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// Default ramp target.
const CLIENTS_DEFAULT: usize = 10_000;

/// Runs the ramp.
pub fn run(args: &Args, common: &Common) -> Result<Record, ScenarioError> {
    let wanted = args.clients.unwrap_or(CLIENTS_DEFAULT).max(1);
    let fd_limit = procinfo::raise_fd_limit();
    let fd_cap = fd_limit.saturating_sub(FD_RESERVE) as usize;
    let planned = wanted.min(fd_cap);
    let mut plan = Plan::new(common.target, common.threads, Pacing::Idle, args.payload);
    plan.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    plan.connecting = args.connecting.max(1);
    for i in 0..planned {
        plan.add_group(channel(args, i), 0, 1, None);
    }
    plan.finish(&args.source);

    // The probe publisher connects first, so the limit the ramp finds cannot lock it out.
    let probe_conn = ProbePublisher::connect(common.target);
    let rss_before = args.broker_pid.and_then(procinfo::pid_rss_bytes);
    let cpu_before = CpuSample::now(args.broker_pid);
    let t0 = Instant::now();
    let engine = Engine::start(plan)?;
    let setup = engine.wait_setup();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_after = CpuSample::now(args.broker_pid);
    // Let the broker finish allocating for the last subscriptions before reading RSS.
    std::thread::sleep(Duration::from_millis(200));
    let rss_after = args.broker_pid.and_then(procinfo::pid_rss_bytes);

    let (stopped_by, error) = match setup.failures.first() {
        Some(first) => {
            let (by, err) = classify(first, args.broker_pid);
            (Some(by), Some(err))
        }
        None if planned < wanted => (
            Some(format!(
                "loadgen's fd limit ({fd_limit}, keeping {FD_RESERVE} spare): raise `ulimit -n`"
            )),
            None,
        ),
        None => (None, None),
    };

    let shared = engine.shared();
    let ready: Vec<usize> = shared
        .conn_ready
        .iter()
        .enumerate()
        .filter(|(_, r)| r.load(Ordering::Relaxed))
        .map(|(i, _)| i)
        .collect();
    let mut targets = Vec::new();
    let mut pool = ready.clone();
    for _ in 0..args.probe.min(pool.len()) {
        let pick = fastrand::usize(..pool.len());
        targets.push(pool.swap_remove(pick));
    }
    let received_before = shared.received.load(Ordering::SeqCst);
    let probe_result = probe_conn.and_then(|mut p| p.publish(args, &targets));
    let deadline = Instant::now() + PROBE_WAIT;
    let mut probe_received = 0;
    while Instant::now() < deadline {
        probe_received = shared.received.load(Ordering::SeqCst) - received_before;
        if probe_received >= targets.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = shared
        .conn_ready
        .iter()
        .filter(|r| r.load(Ordering::Relaxed))
        .count();
    let totals = engine.finish();

    // Setup failures are the finding here (the limit), reported under `conns`, not errors.
    let mut error_samples = totals.error_samples;
    if let Err(e) = &probe_result {
        error_samples.push(format!("probe publisher: {e}"));
    }
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if setup.ready > 0 => {
            Some((after as f64 - before as f64) / setup.ready as f64)
        }
        _ => None,
    };
    let (loadgen_cpu, broker_cpu) = cpu_after.since(&cpu_before);
    Ok(Record {
        scenario: "conns".into(),
        target: common.target.to_string(),
        params: Params {
            subscribers: planned,
            channels: planned,
            payload: args.payload,
            duration: elapsed,
            threads: common.threads,
            ..Params::default()
        },
        connections: setup.ready,
        connect_secs: setup.secs,
        connect_rate: setup.rate(),
        errors: totals.errors + u64::from(probe_result.is_err()),
        error_samples,
        loss: (targets.len() as u64).saturating_sub(probe_received),
        loadgen_cpu_secs: loadgen_cpu,
        broker_cpu_secs: broker_cpu,
        conns: Some(ConnLimit {
            reached: held,
            wanted,
            failed: setup.failed,
            stopped_by,
            error,
            rss_per_conn,
            probe_sent: targets.len(),
            probe_received,
        }),
        ..Record::default()
    })
}

/// Names the limit behind the first failure, looking at the broker when its pid is known.
fn classify(first: &Failure, broker_pid: Option<u32>) -> (String, String) {
    let detail = first.detail.clone();
    let Some(pid) = broker_pid else {
        return (first.kind.describe().to_string(), detail);
    };
    if !procinfo::pid_alive(pid) {
        return (
            "the broker exited (killed? out of memory? see dmesg)".into(),
            detail,
        );
    }
    if matches!(
        first.kind,
        FailKind::BrokerClosed | FailKind::Timeout | FailKind::Other
    ) {
        if let (Some(open), Some(limit)) =
            (procinfo::pid_open_fds(pid), procinfo::pid_fd_limit(pid))
        {
            if open as u64 + 16 >= limit {
                return (
                    format!("broker's fd limit ({open} of {limit} fds open)"),
                    detail,
                );
            }
        }
    }
    (first.kind.describe().to_string(), detail)
}

/// A plain blocking publisher used once, after the ramp.
struct ProbePublisher {
    protocol: Protocol,
    stream: TcpStream,
}

impl ProbePublisher {
    /// Connects and waits for the reply to a ping.
    fn connect(target: Target) -> io::Result<Self> {
        let protocol = target.protocol;
        let mut stream = TcpStream::connect_timeout(&target.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        let mut out = Vec::new();
        protocol.hello(&mut out, u64::from(u32::MAX) + 1);
        protocol.ping(&mut out);
        stream.write_all(&out)?;
        wait_pong(protocol, &mut stream)?;
        Ok(ProbePublisher { protocol, stream })
    }

    /// Publishes one stamped message to each target connection's channel.
    fn publish(&mut self, args: &Args, targets: &[usize]) -> io::Result<()> {
        let mut out = Vec::new();
        let mut payload = Vec::new();
        for (seq, &index) in targets.iter().enumerate() {
            payload.clear();
            stamp::write(
                &mut payload,
                Stamp {
                    publisher: 0,
                    seq: seq as u64,
                    micros: 0,
                },
                args.payload,
            );
            // Group i (channel PREFIX.i) has exactly connection i as its subscriber.
            self.protocol
                .publish(&mut out, &channel(args, index), &payload);
        }
        self.protocol.ping(&mut out);
        self.stream.write_all(&out)?;
        wait_pong(self.protocol, &mut self.stream)
    }
}

fn wait_pong(protocol: Protocol, stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "broker closed the probe connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match protocol.decode(&buf[at..]) {
                Ok(Some((Event::Pong, _))) => return Ok(()),
                Ok(Some((Event::ServerError { code, text }, _))) => {
                    return Err(io::Error::other(format!("ERROR {code}: {text}")))
                }
                Ok(Some((_, used))) => at += used,
                Ok(None) => break,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        buf.drain(..at);
    }
}
