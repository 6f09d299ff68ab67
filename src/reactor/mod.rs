//! The reactor: one thread, one `mio::Poll`, every connection.
//!
//! Owns the event loop and everything it touches per turn: the listener, the slab of
//! connections, the router, and the per-turn work lists (connections to flush, to read
//! again, to close). Data flows one way: socket -> read buffer -> frame -> command ->
//! router -> write queues -> socket. Connections are removed from the slab only at the
//! end of a turn ([`Reactor::close_marked`]), never while a message is being fanned
//! out. It must never block: every socket is non-blocking and every per-connection step
//! has a budget, so one busy peer cannot starve the rest.

mod accept;
mod commands;
mod io;
mod links;
mod settings;

use std::collections::VecDeque;
use std::fs::File;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use tracing::{info, warn};

use crate::connection::{ChunkPool, Connection, Phase, Role};
use crate::federation::Federation;
use crate::logsafe::Throttle;
use crate::router::{ConnId, Router};
use crate::stats::Stats;
use links::Upstream;

pub use settings::Settings;

/// Token of the listening socket.
const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the signal pipe.
const SIGNALS: Token = Token(usize::MAX - 2);

/// Bytes read from one socket per `read` call, and the size of the shared read buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per loop turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per flush before others get their turn.
const WRITE_BUDGET: usize = 1024 * 1024;
/// Events taken from the kernel per poll.
const EVENTS_CAPACITY: usize = 1024;
/// How long a connection being closed may take to flush its last output and see the
/// peer's EOF.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Shortest interval between two rate-limited warnings of one kind.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// How long a graceful shutdown may spend flushing queued output.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The error returned when the reactor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Creating the poll, registering the listener or the signal handler failed.
    #[error("cannot set up the event loop: {0}")]
    Setup(#[from] std::io::Error),
}

/// The event loop and all broker state. See the module documentation.
pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    conns: Slab<Connection>,
    router: Router,
    /// Interest table and loop prevention for federation links.
    fed: Federation,
    /// The `--upstream` brokers this broker dials.
    upstreams: Vec<Upstream>,
    settings: Settings,
    stats: Stats,
    /// Shared read buffer: a read lands here first, and only an incomplete trailing
    /// frame is copied into the connection.
    rbuf: Box<[u8]>,
    /// Output buffers shared by every connection's write queue.
    pool: ChunkPool,
    /// Scratch for encoding one MESSAGE (encoded once per publish).
    frame: Vec<u8>,
    /// Scratch for encoding one ROUTE (encoded once per message sent over links).
    route: Vec<u8>,
    /// Scratch for encoding one reply.
    reply: Vec<u8>,
    /// Scratch for the subscribers of one publish.
    matches: Vec<ConnId>,
    /// Connections with output to write at the end of this turn.
    flush_list: Vec<ConnId>,
    /// Connections whose read budget ran out: read again next turn.
    read_list: Vec<ConnId>,
    /// Connections to remove at the end of this turn.
    to_close: Vec<ConnId>,
    /// Connections in [`Phase::Closing`], by deadline (deadlines are added in order).
    closing: VecDeque<(Instant, ConnId, u64)>,
    next_client_id: u64,
    /// Connections admitted as clients (refused ones on their way out not counted).
    clients: usize,
    /// An fd held in reserve so that, when the process runs out, one can be freed to
    /// accept and refuse a connection instead of leaving it hanging in the backlog.
    spare_fd: Option<File>,
    /// The listener may have more connections waiting (accept budget ran out).
    accept_pending: bool,
    /// Accepting is paused (fd exhaustion) until then.
    accept_paused_until: Option<Instant>,
    /// When fd exhaustion was last logged (the warning is rate-limited).
    fd_warned_at: Option<Instant>,
    /// Set once a shutdown signal arrived: the time to give up flushing.
    shutdown_deadline: Option<Instant>,
    /// Rate limit of the warning about messages too large for a link's peer.
    too_large_log: Throttle,
    /// Rate limit of the warning about frames refused from links.
    refused_log: Throttle,
}

impl Reactor {
    /// Sets up the loop around an already bound listener.
    pub fn new(mut listener: TcpListener, settings: Settings) -> Result<Reactor, ReactorError> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals =
            Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener: Some(listener),
            signals,
            conns: Slab::new(),
            router: Router::new(),
            fed: Federation::new(&settings.name),
            upstreams: settings
                .upstreams
                .iter()
                .map(|&addr| Upstream {
                    addr,
                    conn: None,
                    failures: 0,
                    retry_at: None,
                })
                .collect(),
            settings,
            stats: Stats::default(),
            rbuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            pool: ChunkPool::default(),
            frame: Vec::with_capacity(4096),
            route: Vec::new(),
            reply: Vec::with_capacity(256),
            matches: Vec::new(),
            flush_list: Vec::new(),
            read_list: Vec::new(),
            to_close: Vec::new(),
            closing: VecDeque::new(),
            next_client_id: 1,
            clients: 0,
            spare_fd: File::open("/dev/null").ok(),
            accept_pending: false,
            accept_paused_until: None,
            fd_warned_at: None,
            shutdown_deadline: None,
            too_large_log: Throttle::new(LOG_EVERY),
            refused_log: Throttle::new(LOG_EVERY),
        })
    }

    /// Runs until a shutdown signal has been handled and every connection is flushed
    /// (or the shutdown grace period ran out).
    pub fn run(&mut self) -> Result<(), ReactorError> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        self.start_links();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_ready(),
                    SIGNALS => self.on_signal(),
                    Token(id) => {
                        if self.conns.get(id).is_some_and(|c| c.connecting)
                            && !self.finish_connect(id)
                        {
                            continue;
                        }
                        // A connection already due for a deferred read this turn gets
                        // that one read pass, not two.
                        let deferred = self.conns.get(id).is_some_and(|c| c.read_queued);
                        if !deferred
                            && (event.is_readable() || event.is_read_closed() || event.is_error())
                        {
                            self.on_readable(id);
                        }
                        if event.is_writable() {
                            self.queue_flush(id);
                        }
                    }
                }
            }
            self.run_deferred_reads();
            if self.accept_pending && self.accept_paused_until.is_none() {
                self.accept_ready();
            }
            self.flush_all();
            self.expire_deadlines();
            self.close_marked();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    info!("shutdown complete");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    warn!(
                        connections = self.conns.len(),
                        "shutdown grace period over; closing connections with unsent output"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Zero when work is queued for the next turn, else until the nearest deadline.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.flush_list.is_empty()
            || !self.read_list.is_empty()
            || (self.accept_pending && self.accept_paused_until.is_none())
        {
            return Some(Duration::ZERO);
        }
        let deadlines = [
            self.closing.front().map(|c| c.0),
            self.accept_paused_until,
            self.shutdown_deadline,
            self.next_redial(),
        ];
        let next = deadlines.into_iter().flatten().min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Handles SIGINT / SIGTERM: stop accepting, flush, exit.
    fn on_signal(&mut self) {
        let got: Vec<i32> = self.signals.pending().collect();
        if got.is_empty() || self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            signal = got[0],
            connections = self.clients,
            "shutting down: no longer accepting, flushing queued output"
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_pending = false;
        self.shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.begin_close(id, false);
        }
    }

    /// Closes connections whose closing grace period ran out, and resumes accepting
    /// after a pause.
    fn expire_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, id, client_id)) = self.closing.front() {
            if deadline > now {
                break;
            }
            self.closing.pop_front();
            if let Some(conn) = self.conns.get(id) {
                if conn.client_id == client_id && matches!(conn.phase, Phase::Closing { .. }) {
                    self.to_close.push(id);
                }
            }
        }
        self.redial_due(now);
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept_pending = true;
        }
    }

    /// Removes a connection's subscriptions from the router and tells federation:
    /// a client's patterns lose a local subscriber; a link's interest is withdrawn.
    pub(super) fn drop_subscriptions(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let subs = std::mem::take(&mut conn.subs);
        let is_link = conn.is_link();
        for sub in &subs {
            self.router.remove(&sub.pattern, sub.wildcard, id);
        }
        if is_link {
            if self.fed.is_link(id) {
                info!(peer = ?conn.name, "link closed");
            }
            let effects = self.fed.link_down(id);
            self.apply_effects(effects);
        } else {
            for sub in &subs {
                let effects = self.fed.local_unsubscribed(&sub.pattern);
                self.apply_effects(effects);
            }
        }
    }

    /// Removes the connections marked during this turn.
    fn close_marked(&mut self) {
        let mut list = std::mem::take(&mut self.to_close);
        for id in list.drain(..) {
            if !self.conns.contains(id) {
                continue;
            }
            self.drop_subscriptions(id);
            let Some(mut conn) = self.conns.try_remove(id) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.stream);
            conn.out.release(&mut self.pool);
            if let Role::Link {
                upstream: Some(idx),
            } = conn.role
            {
                if self.upstreams[idx].conn == Some(id) {
                    self.schedule_redial(idx);
                }
            }
            if conn.counted {
                self.clients -= 1;
            }
            self.stats.closed += 1;
            tracing::debug!(conn = %conn.label(), unsent = conn.out.pending(), "connection closed");
        }
        self.to_close = list;
        if self.spare_fd.is_none() {
            // Lost while the process was out of fds; a close may have freed one.
            self.spare_fd = File::open("/dev/null").ok();
        }
    }
}
