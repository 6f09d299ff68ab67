//! Stopping the loop from another thread.
//!
//! Owns [`Control`], the handle a program's signal handler (or a test) uses to ask the
//! reactor to shut down: a flag plus a `mio::Waker` that interrupts the poll. The
//! reactor installs no process-wide handler itself, so several brokers can run in one
//! process. It never touches connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::{Poll, Token, Waker};

/// A handle that stops a running reactor. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Control {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Control {
    /// Asks the reactor to shut down gracefully: stop accepting, flush, exit.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop to the loop's next wake-up.
        let _ = self.waker.wake();
    }
}

/// The reactor's side of [`Control`], and the shutdown deadline once stopping.
pub(super) struct ControlState {
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl ControlState {
    /// Registers a waker under `token`; returns the state and the handle.
    pub(super) fn new(poll: &Poll, token: Token) -> std::io::Result<(ControlState, Control)> {
        let waker = Arc::new(Waker::new(poll.registry(), token)?);
        let stop = Arc::new(AtomicBool::new(false));
        let state = ControlState {
            stop: Arc::clone(&stop),
            deadline: None,
        };
        Ok((state, Control { waker, stop }))
    }

    /// Whether a stop was requested and not yet handled.
    pub(super) fn take_request(&mut self) -> bool {
        self.deadline.is_none() && self.stop.load(Ordering::SeqCst)
    }

    /// Records the time to give up flushing.
    pub(super) fn set_deadline(&mut self, at: Instant) {
        self.deadline = Some(at);
    }

    /// The shutdown deadline, once shutting down.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}
