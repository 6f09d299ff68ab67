//! The reactor: one thread, one `mio::Poll`, every connection.
//!
//! Owns the event loop and nothing else: readiness events in, bytes moved between
//! transports and codecs, the end-of-turn flush, timers, and removing closed
//! connections. Data flows one way: transport -> read buffer -> codec -> core ->
//! write queues -> transport. Connections are removed from the table only at the end
//! of a turn ([`Reactor::close_marked`]), never while a message is being fanned out. It
//! must never block, never parse or encode a frame, and never hold broker semantics:
//! every socket is non-blocking and every per-connection step has a budget, so one
//! busy peer cannot starve the rest.
//!
//! - `listener`: accepting, the connection limit, fd exhaustion.
//! - `io`: reading into codecs, flushing write queues, half-close and closing.
//! - `upstreams`: dialling federation upstreams and re-dialling with backoff.
//! - `timers`: reactor-level deadlines and the sweep of per-connection deadlines.
//! - `control`: the handle other threads use to stop the loop.

mod control;
mod io;
mod listener;
mod timers;
mod upstreams;

use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use tracing::{info, warn};

use crate::connection::{Conns, Deadlines, Due, Role};
use crate::core::{CloseReason, Core, Settings, Turn};
pub use control::Control;
use control::ControlState;
use listener::Listener;
use timers::{Timer, Timers};
use upstreams::Upstreams;

/// Token of the listening socket.
const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the control waker.
const WAKER: Token = Token(usize::MAX - 2);

/// Events taken from the kernel per poll.
const EVENTS_CAPACITY: usize = 1024;
/// How often idle output chunks are given back, and how many are always kept (1 MiB):
/// a chunk idle for a whole interval is freed, so a quiet broker returns what a burst
/// took while a busy one keeps what it reuses every turn.
const TRIM_EVERY: Duration = Duration::from_secs(1);
const TRIM_KEEP: usize = 64;
/// How long a graceful shutdown may spend flushing queued output.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The error returned when the reactor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Creating the poll, or registering the listener or the waker, failed.
    #[error("cannot set up the event loop: {0}")]
    Setup(#[from] std::io::Error),
}

/// The event loop. See the module documentation.
pub struct Reactor {
    poll: Poll,
    listener: Listener,
    conns: Conns,
    core: Core,
    turn: Turn,
    timers: Timers,
    upstreams: Upstreams,
    control: ControlState,
}

impl Reactor {
    /// Sets up the loop around an already bound listener. The returned [`Control`]
    /// stops it from any thread (signal handlers live in the program, not here).
    pub fn new(
        listener: TcpListener,
        settings: Settings,
    ) -> Result<(Reactor, Control), ReactorError> {
        let poll = Poll::new()?;
        let listener = Listener::new(listener, &poll, LISTENER)?;
        let (control, handle) = ControlState::new(&poll, WAKER)?;
        let upstreams = Upstreams::new(&settings.upstreams);
        let now = Instant::now();
        let reactor = Reactor {
            poll,
            listener,
            conns: Conns::new(),
            core: Core::new(settings),
            turn: Turn::new(now),
            timers: Timers::new(now),
            upstreams,
            control,
        };
        Ok((reactor, handle))
    }

    /// Runs until [`Control::shutdown`] has been handled and every connection is
    /// flushed (or the shutdown grace period ran out).
    pub fn run(&mut self) -> Result<(), ReactorError> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        self.turn.now = Instant::now();
        self.start_links();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            self.turn.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_ready(),
                    WAKER => self.on_wake(),
                    Token(slot) => {
                        let Some(key) = self.conns.key_at(slot) else {
                            continue;
                        };
                        self.on_event(key, event);
                    }
                }
            }
            self.run_deferred_reads();
            if self.listener.wants_accept() {
                self.accept_ready();
            }
            self.flush_all();
            self.core.enforce_memory(&mut self.conns, &mut self.turn);
            self.on_links_up();
            self.run_timers();
            self.close_marked();
            if let Some(deadline) = self.control.deadline() {
                if self.conns.is_empty() {
                    info!("shutdown complete");
                    return Ok(());
                }
                if self.turn.now >= deadline {
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
        if self.turn.has_work() || self.listener.wants_accept() {
            return Some(Duration::ZERO);
        }
        let next = self.timers.next(!self.conns.is_empty())?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// A stop was requested: stop accepting, close every connection after its queued
    /// output, exit once all are gone (at most [`SHUTDOWN_GRACE`]).
    fn on_wake(&mut self) {
        if !self.control.take_request() {
            return;
        }
        info!(
            connections = self.core.clients,
            "shutting down: no longer accepting, flushing queued output"
        );
        self.listener.close(&self.poll);
        let deadline = self.turn.now + SHUTDOWN_GRACE;
        self.control.set_deadline(deadline);
        self.timers.add(deadline, Timer::ShutdownGrace);
        for key in self.conns.keys() {
            self.core
                .begin_close(&mut self.conns, &mut self.turn, key, false);
        }
    }

    /// Fires due reactor-level timers and sweeps per-connection deadlines.
    fn run_timers(&mut self) {
        let now = self.turn.now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::AcceptResume => self.listener.resume(),
                Timer::Redial(idx) => self.dial(idx),
                Timer::ShutdownGrace => {} // the loop checks the deadline itself
                Timer::TrimPool => {
                    self.core.pool.trim(TRIM_KEEP);
                }
            }
        }
        let s = &self.core.settings;
        let limits = Deadlines {
            auth: s.auth_timeout,
            frame: s.frame_timeout,
            write: s.write_deadline,
        };
        if self.core.pool.idle() > TRIM_KEEP {
            // Armed only while there is something to give back, so an idle broker sleeps.
            self.timers.add_once(now + TRIM_EVERY, Timer::TrimPool);
        }
        let mut due = Vec::new();
        self.timers.sweep(now, &self.conns, &limits, &mut due);
        for (key, what) in due {
            let (conns, turn) = (&mut self.conns, &mut self.turn);
            match what {
                Due::CloseGrace => turn.close_later(key),
                Due::Auth => {
                    self.core.stats.auth_timeouts += 1;
                    let reason = CloseReason::AuthTimeout { after: limits.auth };
                    self.core.close(conns, turn, key, &reason);
                }
                Due::Frame => {
                    self.core.stats.frame_timeouts += 1;
                    let reason = CloseReason::Stale {
                        after: limits.frame,
                    };
                    self.core.close(conns, turn, key, &reason);
                }
                Due::Write => {
                    self.core.stats.write_stalls += 1;
                    let reason = CloseReason::WriteStalled {
                        after: limits.write,
                    };
                    self.core.shed_output(conns, turn, key, &reason);
                }
            }
        }
    }

    /// Removes the connections marked during this turn.
    fn close_marked(&mut self) {
        for key in self.turn.take_closes() {
            if !self.conns.contains(key) {
                continue;
            }
            self.core
                .drop_subscriptions(&mut self.conns, &mut self.turn, key);
            let Some(mut conn) = self.conns.remove(key) else {
                continue;
            };
            let _ = self.poll.registry().deregister(conn.transport().source());
            if conn.pending() > 0 {
                // Given up on with output unsent (mid-frame, perhaps): a reset, so the
                // peer never takes a cut-off frame for a clean end.
                conn.transport().abort_on_close();
            }
            conn.out().release(&mut self.core.pool);
            drop(conn.take_partial(&mut self.core.input_held));
            if let Role::Link {
                upstream: Some(idx),
            } = conn.role()
            {
                if self.upstreams.conn(idx) == Some(key) {
                    self.schedule_redial(idx);
                }
            }
            if conn.counted() {
                self.core.clients -= 1;
            }
            self.core.stats.closed += 1;
            tracing::debug!(conn = %conn.label(), unsent = conn.pending(), "connection closed");
        }
        self.listener.restore_spare_fd();
    }
}
