//! State shared between the coordinating thread and the workers: the run's phase, its
//! clock, setup counters, failures, and each publisher's flow-control record. Everything
//! here is atomics or rarely-taken locks; the hot path touches only [`Flow`].
//!
//! Flow control: each worker publishes, per publisher, the lowest count of that publisher's
//! messages received by any of its local subscribers (`low_water`). A publisher's messages
//! are "completed" up to the minimum over workers, and it keeps `sent - completed` under
//! its window. A publisher that hits its window parks; the worker whose low-water mark
//! passes the publisher's `wake_at` wakes the publisher's thread.

use super::plan::Plan;
use mio::Waker;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Connecting and subscribing.
    Setup = 0,
    /// Publishing.
    Run = 1,
    /// Publishing stopped; in-flight messages still arrive.
    Drain = 2,
    /// Workers return their reports.
    Exit = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Drain,
            _ => Phase::Exit,
        }
    }
}

/// Which limit a failed connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// loadgen could not open another socket (EMFILE/ENFILE).
    LoadgenFdLimit,
    /// No free local port for this source address (EADDRNOTAVAIL).
    EphemeralPorts,
    /// The broker refused with its connection limit (JSON `ERROR limit`, NATS
    /// "maximum connections", MQTT CONNACK 3).
    BrokerMaxConnections,
    /// The broker closed or reset the connection before confirming it (often its fd limit).
    BrokerClosed,
    /// Nothing listens there (ECONNREFUSED).
    Refused,
    /// Kernel memory for sockets ran out (ENOMEM/ENOBUFS).
    Memory,
    /// Connect or confirmation took longer than --connect-timeout.
    Timeout,
    /// The broker sent something we could not parse, or another error reply.
    Protocol,
    /// Any other OS error.
    Other,
}

impl FailKind {
    /// Classifies an OS error from socket(), bind(), connect(), read() or write().
    pub fn of_io(err: &io::Error) -> FailKind {
        match err.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => FailKind::LoadgenFdLimit,
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => FailKind::EphemeralPorts,
            Some(libc::ECONNREFUSED) => FailKind::Refused,
            Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => FailKind::BrokerClosed,
            Some(libc::ENOMEM | libc::ENOBUFS) => FailKind::Memory,
            Some(libc::ETIMEDOUT) => FailKind::Timeout,
            _ => FailKind::Other,
        }
    }

    /// Short human name of the limit.
    pub fn describe(self) -> &'static str {
        match self {
            FailKind::LoadgenFdLimit => "loadgen's fd limit",
            FailKind::EphemeralPorts => "ephemeral ports (use --source 127.0.0.2,...)",
            FailKind::BrokerMaxConnections => {
                "broker's connection limit (--max-connections, maxclients, max_connections)"
            }
            FailKind::BrokerClosed => "broker closed the connection",
            FailKind::Refused => "connection refused",
            FailKind::Memory => "kernel memory",
            FailKind::Timeout => "connect/subscribe timeout",
            FailKind::Protocol => "protocol error",
            FailKind::Other => "OS error",
        }
    }
}

/// A connection that failed during setup.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The limit it ran into.
    pub kind: FailKind,
    /// The OS error or server reply, as text.
    pub detail: String,
    /// Connections that were ready when it failed.
    pub ready_then: usize,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) with {} connections ready",
            self.kind.describe(),
            self.detail,
            self.ready_then
        )
    }
}

/// Flow-control record of one publisher.
#[derive(Debug)]
pub struct Flow {
    /// Per worker: lowest received count among its subscribers of this publisher
    /// (`u64::MAX` when it has none).
    pub low_water: Box<[AtomicU64]>,
    /// Messages sent so far.
    pub sent: AtomicU64,
    /// The publisher is waiting for its window to open.
    pub parked: AtomicBool,
    /// Wake the publisher once completions reach this count.
    pub wake_at: AtomicU64,
    /// Worker thread that owns the publisher.
    pub thread: usize,
}

impl Flow {
    /// Messages received by every subscriber.
    pub fn completed(&self) -> u64 {
        self.low_water
            .iter()
            .map(|w| w.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// The state every thread of a run can see.
pub struct Shared {
    /// What to do.
    pub plan: Plan,
    /// Time zero of stamps.
    pub base: Instant,
    phase: AtomicU8,
    /// Stamp time at which publishing starts.
    pub run_start_us: AtomicU64,
    /// Stamp time from which messages are measured.
    pub measure_start_us: AtomicU64,
    /// Stamp time at which measuring (and publishing) ends.
    pub measure_end_us: AtomicU64,
    /// Connections confirmed.
    pub ready: AtomicUsize,
    /// Connections failed during setup.
    pub failed: AtomicUsize,
    /// Connections never attempted because setup stopped.
    pub skipped: AtomicUsize,
    /// Stop opening connections (a failure happened).
    pub stop_connecting: AtomicBool,
    /// Stamp time of the latest confirmation.
    pub last_ready_us: AtomicU64,
    /// Workers that have seen the Drain phase and stopped publishing.
    pub drained_workers: AtomicUsize,
    /// Messages received by subscribers so far (updated per read, for progress and probes).
    pub received: AtomicU64,
    /// Per connection (plan index): confirmed and still open.
    pub conn_ready: Vec<AtomicBool>,
    /// Per connection (plan index): interest probes (`~probe`) its subscriber received.
    pub conn_probed: Vec<AtomicU32>,
    /// Per connection (plan index): reachability checks (`~check`) its subscriber
    /// received; `fleet` requires exactly one at each targeted connection.
    pub conn_checked: Vec<AtomicU32>,
    /// Setup failures in order.
    pub failures: Mutex<Vec<Failure>>,
    /// Per publisher flow-control records.
    pub flows: Vec<Flow>,
    /// One waker per worker.
    pub wakers: Vec<Waker>,
}

impl Shared {
    /// Builds the shared state for `plan` with one waker per worker.
    pub fn new(plan: Plan, wakers: Vec<Waker>) -> Self {
        let threads = plan.threads;
        let mut subs_on = vec![vec![false; threads]; plan.groups.len()];
        let mut pub_thread = vec![0usize; plan.publishers as usize];
        for conn in &plan.conns {
            match conn.role {
                super::plan::Role::Subscriber { group } => {
                    subs_on[group as usize][conn.thread] = true
                }
                super::plan::Role::Publisher { id, .. } => pub_thread[id as usize] = conn.thread,
            }
        }
        let mut flows = Vec::with_capacity(plan.publishers as usize);
        for (g, group) in plan.groups.iter().enumerate() {
            for id in group.publishers.clone() {
                let low_water = (0..threads)
                    .map(|t| AtomicU64::new(if subs_on[g][t] { 0 } else { u64::MAX }))
                    .collect();
                flows.push(Flow {
                    low_water,
                    sent: AtomicU64::new(0),
                    parked: AtomicBool::new(false),
                    wake_at: AtomicU64::new(0),
                    thread: pub_thread[id as usize],
                });
            }
        }
        let conn_count = plan.conns.len();
        Shared {
            plan,
            base: Instant::now(),
            phase: AtomicU8::new(Phase::Setup as u8),
            run_start_us: AtomicU64::new(u64::MAX),
            measure_start_us: AtomicU64::new(u64::MAX),
            measure_end_us: AtomicU64::new(u64::MAX),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            stop_connecting: AtomicBool::new(false),
            last_ready_us: AtomicU64::new(0),
            drained_workers: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            conn_ready: (0..conn_count).map(|_| AtomicBool::new(false)).collect(),
            conn_probed: (0..conn_count).map(|_| AtomicU32::new(0)).collect(),
            conn_checked: (0..conn_count).map(|_| AtomicU32::new(0)).collect(),
            flows,
            wakers,
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    /// Moves to `phase` and wakes every worker.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
        for waker in &self.wakers {
            // A failed wake only delays the worker until its poll timeout.
            let _ = waker.wake();
        }
    }

    /// Microseconds since `base`.
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// Records a setup failure and stops further connection attempts.
    pub fn fail(&self, kind: FailKind, detail: String) {
        let ready_then = self.ready.load(Ordering::SeqCst);
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.stop_connecting.store(true, Ordering::SeqCst);
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() < 100 {
                failures.push(Failure {
                    kind,
                    detail,
                    ready_then,
                });
            }
        }
    }
}
