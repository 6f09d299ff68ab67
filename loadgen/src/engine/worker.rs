//! One event-loop thread: opens its share of the plan's connections, confirms their
//! subscriptions, pumps its publishers (windowed or paced), and counts what its subscribers
//! receive (deliveries, latency, loss, reordering). Never blocks on a socket; the only
//! sleep is a paced publisher's wait for its next intended send time.

use super::plan::{Pacing, Role};
use super::shared::{FailKind, Phase, Shared};
use crate::adapter::{Event, Protocol};
use crate::stamp::{self, Stamp};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the worker's waker.
pub const WAKE: Token = Token(usize::MAX);
/// Bytes read per `read` call; also the largest frame a connection may receive.
const READ_BUF: usize = 256 * 1024;
/// Reads per connection per readiness event before yielding to the others.
const READS_PER_TURN: usize = 8;
/// A publisher stops encoding once this much output waits for the socket.
const PUB_HIGH_WATER: usize = 256 * 1024;
/// Messages a windowed publisher encodes per pump call before letting others run.
const PUMP_BUDGET: u64 = 4096;
/// Messages encoded per window check.
const PUMP_BATCH: u64 = 64;
/// A paced publisher stops encoding (and falls behind, visibly) past this backlog.
const PACED_BACKLOG: usize = 64 * 1024 * 1024;
/// Poll timeout when nothing is scheduled; phase changes wake workers explicitly.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Poll timeout while connecting, to start new connects and check timeouts.
const SETUP_POLL: Duration = Duration::from_millis(5);
/// Highest latency the histogram records (larger values are clamped), in microseconds.
const HIST_MAX_US: u64 = 60 * 1_000_000;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Confirming,
    Ready,
    Closed,
}

/// Per-publisher receive record of one subscriber.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    received: u64,
    next_seq: u64,
}

struct Conn {
    spec: usize,
    stream: Option<TcpStream>,
    state: State,
    started: Instant,
    partial: Vec<u8>,
    out: Vec<u8>,
    /// Subscriber: receive records, indexed by publisher id minus the group's first id.
    tracks: Vec<Track>,
    /// Subscriber: index into the worker's local groups.
    local_group: usize,
    /// Publisher: next sequence number.
    seq: u64,
    /// Publisher: output is waiting for the socket to drain.
    write_blocked: bool,
}

/// The groups this worker has subscribers of.
struct LocalGroup {
    group: u32,
    subs: Vec<usize>,
    dirty: bool,
    last: Vec<u64>,
}

/// What a worker counted, returned when it exits.
#[derive(Debug)]
pub struct WorkerReport {
    /// Messages published with a stamp inside the measured window.
    pub published_window: u64,
    /// Deliveries of messages stamped inside the measured window.
    pub delivered_window: u64,
    /// Per publisher id: deliveries received by this worker's subscribers, all phases.
    pub received_by_pub: Vec<u64>,
    /// Per publisher id: messages sent (only for this worker's publishers).
    pub sent_by_pub: Vec<u64>,
    /// Messages that arrived with a lower sequence than one already seen (or repeated).
    pub reorder: u64,
    /// Payloads without a valid stamp, or from publishers outside the subscriber's group.
    pub foreign: u64,
    /// Errors after setup (server errors, disconnects, parse errors).
    pub errors: u64,
    /// The first few errors, as text.
    pub error_samples: Vec<String>,
    /// Latency of measured deliveries, microseconds.
    pub latency: Histogram<u64>,
}

/// Why a windowed publisher stopped encoding.
enum PumpStop {
    Window,
    Socket,
    Budget,
}

enum ReadOutcome {
    Drained,
    More,
    Closed(String, FailKind),
}

/// One event loop.
pub struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    protocol: Protocol,
    conns: Slab<Conn>,
    queue: std::collections::VecDeque<usize>,
    connecting: usize,
    unconfirmed: std::collections::VecDeque<usize>,
    publishers: Vec<usize>,
    groups: Vec<LocalGroup>,
    group_index: Vec<Option<usize>>,
    again_read: Vec<usize>,
    again_pump: Vec<usize>,
    dirty_out: Vec<usize>,
    read_buf: Vec<u8>,
    scratch: Vec<u8>,
    report: WorkerReport,
    window: (u64, u64),
    paced: bool,
}

impl Worker {
    /// Prepares worker `id` with its poll instance (whose waker is in `shared`).
    pub fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> io::Result<Self> {
        let plan = &shared.plan;
        let queue = plan
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.thread == id)
            .map(|(i, _)| i)
            .collect();
        let publishers = plan.publishers as usize;
        let latency = latency_histogram();
        Ok(Worker {
            id,
            poll,
            protocol: plan.target.protocol,
            conns: Slab::new(),
            queue,
            connecting: 0,
            unconfirmed: std::collections::VecDeque::new(),
            publishers: Vec::new(),
            groups: Vec::new(),
            group_index: vec![None; plan.groups.len()],
            again_read: Vec::new(),
            again_pump: Vec::new(),
            dirty_out: Vec::new(),
            read_buf: vec![0; READ_BUF],
            scratch: Vec::with_capacity(plan.payload),
            report: WorkerReport {
                published_window: 0,
                delivered_window: 0,
                received_by_pub: vec![0; publishers],
                sent_by_pub: vec![0; publishers],
                reorder: 0,
                foreign: 0,
                errors: 0,
                error_samples: Vec::new(),
                latency,
            },
            window: (u64::MAX, u64::MAX),
            paced: matches!(plan.pacing, Pacing::Rate(_)),
            shared,
        })
    }

    /// Runs until the Exit phase, then returns what it counted.
    pub fn run(mut self) -> WorkerReport {
        let mut events = Events::with_capacity(1024);
        let mut seen = Phase::Setup;
        if self.paced && self.has_publishers_planned() {
            crate::procinfo::tighten_timer_slack();
        }
        loop {
            if seen == Phase::Setup {
                self.start_connects();
            }
            let timeout = self.poll_timeout(seen);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.error(format!("poll failed: {e}"));
                    std::thread::sleep(SETUP_POLL);
                }
            }
            let mut woke = false;
            for event in events.iter() {
                if event.token() == WAKE {
                    woke = true;
                    continue;
                }
                let key = event.token().0;
                let Some(conn) = self.conns.get(key) else {
                    continue;
                };
                match conn.state {
                    State::Closed => continue,
                    State::Connecting => self.finish_connect(key),
                    _ => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                        if event.is_writable() {
                            self.writable(key, seen);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.again_read) {
                self.read(key);
            }
            let phase = self.shared.phase();
            if phase != seen {
                self.enter(phase);
                seen = phase;
                woke = true;
            }
            if phase == Phase::Exit {
                break;
            }
            if phase == Phase::Run {
                if self.paced {
                    self.pump_paced();
                } else {
                    let mut pump = std::mem::take(&mut self.again_pump);
                    if woke {
                        pump.extend_from_slice(&self.publishers);
                    }
                    pump.sort_unstable();
                    pump.dedup();
                    for key in pump {
                        self.pump_window(key);
                    }
                }
            }
            // Paced publishers ignore the window; their progress only matters for draining.
            if !self.paced || phase != Phase::Run {
                self.publish_progress();
            }
            if seen == Phase::Setup {
                self.check_timeouts();
            }
            for key in std::mem::take(&mut self.dirty_out) {
                self.flush(key);
            }
        }
        self.finish_report();
        self.report
    }

    fn has_publishers_planned(&self) -> bool {
        self.queue
            .iter()
            .any(|&i| matches!(self.shared.plan.conns[i].role, Role::Publisher { .. }))
    }

    fn poll_timeout(&self, phase: Phase) -> Option<Duration> {
        if !self.again_read.is_empty() || !self.again_pump.is_empty() || !self.dirty_out.is_empty()
        {
            return Some(Duration::ZERO);
        }
        match phase {
            Phase::Setup => Some(SETUP_POLL),
            Phase::Run if self.paced && !self.publishers.is_empty() => {
                let now = self.shared.now_us();
                let next = self.next_paced_us();
                let wait = next.saturating_sub(now);
                if wait > 2000 {
                    Some(Duration::from_micros(wait - 1000))
                } else {
                    // epoll waits in whole milliseconds: sleep the rest precisely.
                    if wait > 0 {
                        std::thread::sleep(Duration::from_micros(wait));
                    }
                    Some(Duration::ZERO)
                }
            }
            _ => Some(IDLE_POLL),
        }
    }

    fn enter(&mut self, phase: Phase) {
        match phase {
            Phase::Run => {
                let start = self.shared.measure_start_us.load(Ordering::SeqCst);
                let end = self.shared.measure_end_us.load(Ordering::SeqCst);
                self.window = (start, end);
                let pending = self.queue.len();
                if pending > 0 {
                    self.shared.skipped.fetch_add(pending, Ordering::SeqCst);
                    self.queue.clear();
                }
            }
            Phase::Drain => {
                self.again_pump.clear();
                self.shared.drained_workers.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    // ---- connection setup ----

    fn start_connects(&mut self) {
        let limit = self
            .shared
            .plan
            .connecting
            .div_ceil(self.shared.plan.sub_threads)
            .max(1);
        while self.connecting < limit {
            if self.shared.stop_connecting.load(Ordering::Relaxed) {
                let pending = self.queue.len();
                if pending > 0 {
                    self.shared.skipped.fetch_add(pending, Ordering::SeqCst);
                    self.queue.clear();
                }
                return;
            }
            let Some(spec) = self.queue.pop_front() else {
                return;
            };
            if let Err(e) = self.open(spec) {
                self.shared
                    .fail(FailKind::of_io(&e), format!("connect: {e}"));
            }
        }
    }

    fn open(&mut self, spec_index: usize) -> io::Result<()> {
        let spec = self.shared.plan.conns[spec_index];
        let addr = spec.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if let Some(source) = spec.source {
            bind_no_port(&socket);
            socket.bind(&SocketAddr::new(source, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut conn = Conn {
            spec: spec_index,
            stream: Some(stream),
            state: State::Connecting,
            started: Instant::now(),
            partial: Vec::new(),
            out: Vec::new(),
            tracks: Vec::new(),
            local_group: 0,
            seq: 0,
            write_blocked: false,
        };
        match spec.role {
            Role::Subscriber { group } => {
                let g = &self.shared.plan.groups[group as usize];
                conn.tracks = vec![Track::default(); g.publishers.len()];
                let local = match self.group_index[group as usize] {
                    Some(i) => i,
                    None => {
                        self.groups.push(LocalGroup {
                            group,
                            subs: Vec::new(),
                            dirty: false,
                            last: vec![0; g.publishers.len()],
                        });
                        self.group_index[group as usize] = Some(self.groups.len() - 1);
                        self.groups.len() - 1
                    }
                };
                self.groups[local].subs.push(key);
                conn.local_group = local;
            }
            Role::Publisher { .. } => self.publishers.push(key),
        }
        entry.insert(conn);
        self.connecting += 1;
        self.unconfirmed.push_back(key);
        Ok(())
    }

    fn finish_connect(&mut self, key: usize) {
        let status = match self.conns.get(key).and_then(|c| c.stream.as_ref()) {
            None => return,
            Some(stream) => match stream.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
                    Err(e) => Err(e),
                },
            },
        };
        match status {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                self.setup_failed(key, FailKind::of_io(&e), format!("connect: {e}"));
                return;
            }
        }
        let protocol = self.protocol;
        let plan = &self.shared.plan;
        let conn = &mut self.conns[key];
        conn.state = State::Confirming;
        protocol.hello(&mut conn.out, key as u64 + ((self.id as u64) << 40));
        match plan.conns[conn.spec].role {
            Role::Subscriber { group } => {
                protocol.subscribe(&mut conn.out, &plan.groups[group as usize].channel);
            }
            Role::Publisher { .. } => protocol.ping(&mut conn.out),
        }
        self.flush(key);
    }

    fn setup_failed(&mut self, key: usize, kind: FailKind, detail: String) {
        let was_ready = self.conns.get(key).is_some_and(|c| c.state == State::Ready);
        self.close(key);
        if was_ready {
            self.error(detail);
        } else {
            self.connecting = self.connecting.saturating_sub(1);
            self.shared.fail(kind, detail);
        }
    }

    fn mark_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.state == State::Confirming {
                conn.state = State::Ready;
                self.shared.conn_ready[conn.spec].store(true, Ordering::Relaxed);
                self.connecting = self.connecting.saturating_sub(1);
                self.shared.ready.fetch_add(1, Ordering::SeqCst);
                let now = self.shared.now_us();
                self.shared.last_ready_us.fetch_max(now, Ordering::SeqCst);
            }
        }
    }

    /// Fails connections that have not been confirmed in time. Connections start in
    /// order, so only the oldest unconfirmed ones need looking at.
    fn check_timeouts(&mut self) {
        let limit = self.shared.plan.connect_timeout;
        while let Some(&key) = self.unconfirmed.front() {
            let Some(conn) = self.conns.get(key) else {
                self.unconfirmed.pop_front();
                continue;
            };
            let what = match conn.state {
                State::Connecting => "TCP connect",
                State::Confirming => "subscription confirmation",
                State::Ready | State::Closed => {
                    self.unconfirmed.pop_front();
                    continue;
                }
            };
            if conn.started.elapsed() <= limit {
                return;
            }
            self.unconfirmed.pop_front();
            self.setup_failed(
                key,
                FailKind::Timeout,
                format!("{what} took longer than {:.1} s", limit.as_secs_f64()),
            );
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            self.shared.conn_ready[conn.spec].store(false, Ordering::Relaxed);
            if let Some(mut stream) = conn.stream.take() {
                // Deregistering a socket we are about to drop cannot fail in a way we act on.
                let _ = self.poll.registry().deregister(&mut stream);
            }
            conn.state = State::Closed;
            conn.out = Vec::new();
            conn.partial = Vec::new();
        }
    }

    fn error(&mut self, text: String) {
        self.report.errors += 1;
        if self.report.error_samples.len() < 10 {
            self.report.error_samples.push(text);
        }
    }

    // ---- reading ----

    fn read(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.read_buf);
        let outcome = self.read_into(key, &mut buf);
        self.read_buf = buf;
        match outcome {
            ReadOutcome::Drained => {}
            ReadOutcome::More => self.again_read.push(key),
            ReadOutcome::Closed(detail, kind) => self.setup_failed(key, kind, detail),
        }
    }

    fn read_into(&mut self, key: usize, buf: &mut [u8]) -> ReadOutcome {
        let Some(conn) = self.conns.get_mut(key) else {
            return ReadOutcome::Drained;
        };
        let mut filled = conn.partial.len();
        buf[..filled].copy_from_slice(&conn.partial);
        conn.partial.clear();
        let mut outcome = ReadOutcome::More;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return ReadOutcome::Drained;
            };
            let Some(stream) = conn.stream.as_mut() else {
                return ReadOutcome::Drained;
            };
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    outcome = ReadOutcome::Closed(
                        "broker closed the connection (EOF)".into(),
                        FailKind::BrokerClosed,
                    );
                    break;
                }
                Ok(n) => {
                    // A short read emptied the receive queue; data arriving later raises
                    // a new edge, so skip the read that would only say WouldBlock.
                    if filled + n < buf.len() {
                        outcome = ReadOutcome::Drained;
                    }
                    filled += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    outcome = ReadOutcome::Drained;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    outcome = ReadOutcome::Closed(format!("read: {e}"), FailKind::of_io(&e));
                    break;
                }
            }
            match self.process(key, &buf[..filled]) {
                Ok(used) => {
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
                Err(closed) => return closed,
            }
            if filled == buf.len() {
                return ReadOutcome::Closed(
                    format!("frame larger than {READ_BUF} bytes"),
                    FailKind::Protocol,
                );
            }
            if matches!(outcome, ReadOutcome::Drained) {
                break;
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.partial.extend_from_slice(&buf[..filled]);
        }
        outcome
    }

    /// Handles every complete frame in `data`; returns the bytes used.
    fn process(&mut self, key: usize, data: &[u8]) -> Result<usize, ReadOutcome> {
        let protocol = self.protocol;
        let now_us = self.shared.now_us();
        let mut at = 0;
        let mut received = 0u64;
        let result = loop {
            let (event, used) = match protocol.decode(&data[at..]) {
                Ok(Some(found)) => found,
                Ok(None) => break Ok(at),
                Err(e) => break Err(ReadOutcome::Closed(e.to_string(), FailKind::Protocol)),
            };
            at += used;
            match event {
                Event::Message(payload) => {
                    received += 1;
                    self.on_message(key, payload, now_us);
                }
                Event::Subscribed => {
                    if !protocol.subscribe_confirmed_by_pong() && self.is_subscriber(key) {
                        self.mark_ready(key);
                    }
                }
                Event::Pong => {
                    if protocol.subscribe_confirmed_by_pong() || !self.is_subscriber(key) {
                        self.mark_ready(key);
                    }
                }
                Event::Ping => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        protocol.pong(&mut conn.out);
                        self.dirty_out.push(key);
                    }
                }
                Event::ServerError { code, text } => {
                    let confirmed = self.conns.get(key).is_some_and(|c| c.state == State::Ready);
                    if confirmed {
                        self.error(format!("server error {code}: {text}"));
                    } else {
                        let kind = if code == "limit" {
                            FailKind::BrokerMaxConnections
                        } else {
                            FailKind::Protocol
                        };
                        break Err(ReadOutcome::Closed(format!("ERROR {code}: {text}"), kind));
                    }
                }
                Event::Other => {}
            }
        };
        if received > 0 {
            self.shared.received.fetch_add(received, Ordering::Relaxed);
        }
        result
    }

    fn is_subscriber(&self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| matches!(self.shared.plan.conns[c.spec].role, Role::Subscriber { .. }))
    }

    fn on_message(&mut self, key: usize, payload: &[u8], now_us: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Role::Subscriber { group } = self.shared.plan.conns[conn.spec].role else {
            self.report.foreign += 1;
            return;
        };
        let Some(Stamp {
            publisher,
            seq,
            micros,
        }) = stamp::read(payload)
        else {
            if payload.starts_with(stamp::PROBE_PREFIX) {
                // An interest probe (see scenario::barrier): proves the path; counted per
                // connection, not as a delivery.
                self.shared.conn_probed[conn.spec].fetch_add(1, Ordering::Relaxed);
            } else if payload.starts_with(stamp::CHECK_PREFIX) {
                // A reachability check (see scenario::fleet): counted per connection.
                self.shared.conn_checked[conn.spec].fetch_add(1, Ordering::Relaxed);
            } else {
                self.report.foreign += 1;
            }
            return;
        };
        let first = self.shared.plan.groups[group as usize].publishers.start;
        let Some(track) = conn.tracks.get_mut(publisher.wrapping_sub(first) as usize) else {
            self.report.foreign += 1;
            return;
        };
        track.received += 1;
        if seq < track.next_seq {
            self.report.reorder += 1;
        } else {
            track.next_seq = seq + 1;
        }
        self.groups[conn.local_group].dirty = true;
        if let Some(count) = self.report.received_by_pub.get_mut(publisher as usize) {
            *count += 1;
        }
        if micros >= self.window.0 && micros < self.window.1 {
            self.report.delivered_window += 1;
            let latency = now_us.saturating_sub(micros).max(1);
            self.report.latency.saturating_record(latency);
        }
    }

    /// Publishes each dirty group's low-water marks and wakes parked publishers.
    fn publish_progress(&mut self) {
        for lg in self.groups.iter_mut().filter(|g| g.dirty) {
            lg.dirty = false;
            let first = self.shared.plan.groups[lg.group as usize].publishers.start;
            for (i, last) in lg.last.iter_mut().enumerate() {
                let low = lg
                    .subs
                    .iter()
                    .filter_map(|&k| self.conns.get(k))
                    .map(|c| c.tracks.get(i).map_or(0, |t| t.received))
                    .min()
                    .unwrap_or(0);
                if low == *last {
                    continue;
                }
                *last = low;
                let flow = &self.shared.flows[first as usize + i];
                flow.low_water[self.id].store(low, Ordering::SeqCst);
                if flow.parked.load(Ordering::SeqCst)
                    && low >= flow.wake_at.load(Ordering::SeqCst)
                    && flow.parked.swap(false, Ordering::SeqCst)
                {
                    // A failed wake leaves the publisher to its poll timeout.
                    let _ = self.shared.wakers[flow.thread].wake();
                }
            }
        }
    }

    // ---- writing and publishing ----

    fn writable(&mut self, key: usize, phase: Phase) {
        let was_blocked = self.conns.get(key).is_some_and(|c| c.write_blocked);
        self.flush(key);
        let unblocked = self.conns.get(key).is_some_and(|c| !c.write_blocked);
        if was_blocked && unblocked && phase == Phase::Run && !self.paced {
            self.again_pump.push(key);
        }
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        if conn.state == State::Connecting {
            return;
        }
        let mut written = 0;
        let mut failure = None;
        while written < conn.out.len() {
            match stream.write(&conn.out[written..]) {
                Ok(0) => {
                    failure = Some(("write returned 0".to_string(), FailKind::BrokerClosed));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some((format!("write: {e}"), FailKind::of_io(&e)));
                    break;
                }
            }
        }
        conn.out.drain(..written);
        conn.write_blocked = !conn.out.is_empty();
        if let Some((detail, kind)) = failure {
            self.setup_failed(key, kind, detail);
        }
    }

    /// Sends as many messages as the window and the socket allow.
    fn pump_window(&mut self, key: usize) {
        let Pacing::Window(window) = self.shared.plan.pacing else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let plan = &shared.plan;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state != State::Ready {
            return;
        }
        let Role::Publisher { id, group } = plan.conns[conn.spec].role else {
            return;
        };
        let flow = &shared.flows[id as usize];
        let channel = &plan.groups[group as usize].channel;
        let now_us = shared.now_us();
        let counted = now_us >= self.window.0 && now_us < self.window.1;
        let mut completed = flow.completed();
        let mut budget = PUMP_BUDGET;
        let stop = loop {
            if conn.out.len() >= PUB_HIGH_WATER {
                break PumpStop::Socket;
            }
            let in_flight = conn.seq.saturating_sub(completed);
            if in_flight >= window {
                flow.wake_at
                    .store(conn.seq.saturating_sub(window / 2), Ordering::SeqCst);
                flow.parked.store(true, Ordering::SeqCst);
                completed = flow.completed();
                if conn.seq.saturating_sub(completed) >= window {
                    break PumpStop::Window;
                }
                flow.parked.store(false, Ordering::SeqCst);
                continue;
            }
            if budget == 0 {
                break PumpStop::Budget;
            }
            let n = (window - in_flight).min(PUMP_BATCH).min(budget);
            for _ in 0..n {
                self.scratch.clear();
                stamp::write(
                    &mut self.scratch,
                    Stamp {
                        publisher: id,
                        seq: conn.seq,
                        micros: now_us,
                    },
                    plan.payload,
                );
                self.protocol.publish(&mut conn.out, channel, &self.scratch);
                conn.seq += 1;
            }
            if counted {
                self.report.published_window += n;
            }
            budget -= n;
        };
        flow.sent.store(conn.seq, Ordering::SeqCst);
        self.flush(key);
        let socket_free = self.conns.get(key).is_some_and(|c| !c.write_blocked);
        match stop {
            // Parked: the worker whose subscribers catch up wakes this thread.
            PumpStop::Window => {}
            PumpStop::Budget => self.again_pump.push(key),
            // The writable event resumes a blocked socket; a drained one goes on now.
            PumpStop::Socket if socket_free => self.again_pump.push(key),
            PumpStop::Socket => {}
        }
    }

    fn next_paced_us(&self) -> u64 {
        let Pacing::Rate(rate) = self.shared.plan.pacing else {
            return u64::MAX;
        };
        let start = self.shared.run_start_us.load(Ordering::Relaxed);
        self.publishers
            .iter()
            .filter_map(|&k| self.conns.get(k))
            .filter(|c| c.state == State::Ready)
            .map(|c| start + (c.seq as f64 * 1e6 / rate) as u64)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Sends every message whose intended time has come, stamped with that intended time.
    fn pump_paced(&mut self) {
        let Pacing::Rate(rate) = self.shared.plan.pacing else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let plan = &shared.plan;
        let start = shared.run_start_us.load(Ordering::Relaxed);
        let now_us = shared.now_us();
        for &key in &self.publishers {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.state != State::Ready {
                continue;
            }
            let Role::Publisher { id, group } = plan.conns[conn.spec].role else {
                continue;
            };
            let channel = &plan.groups[group as usize].channel;
            loop {
                let intended = start + (conn.seq as f64 * 1e6 / rate) as u64;
                if intended > now_us || conn.out.len() >= PACED_BACKLOG {
                    break;
                }
                self.scratch.clear();
                stamp::write(
                    &mut self.scratch,
                    Stamp {
                        publisher: id,
                        seq: conn.seq,
                        micros: intended,
                    },
                    plan.payload,
                );
                self.protocol.publish(&mut conn.out, channel, &self.scratch);
                conn.seq += 1;
                if intended >= self.window.0 && intended < self.window.1 {
                    self.report.published_window += 1;
                }
            }
            shared.flows[id as usize]
                .sent
                .store(conn.seq, Ordering::SeqCst);
            self.dirty_out.push(key);
        }
    }

    fn finish_report(&mut self) {
        for (_, conn) in self.conns.iter() {
            if let Role::Publisher { id, .. } = self.shared.plan.conns[conn.spec].role {
                if let Some(sent) = self.report.sent_by_pub.get_mut(id as usize) {
                    *sent = conn.seq;
                }
            }
        }
    }
}

/// An empty latency histogram: 1 us to 60 s at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Lets the kernel pick the local port at connect time rather than at bind time, so one
/// source address can reuse a port towards different destinations (IP_BIND_ADDRESS_NO_PORT).
fn bind_no_port(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a valid pointer for the given length.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
