//! Dialling federation upstreams, and dialling again when a link is lost.
//!
//! Owns the `--upstream` list and each one's link state: the connection while one is
//! open or opening, and the failures since the link was last up, from which the next
//! wait is computed (exponential backoff with jitter, capped by
//! `--link-backoff-max-ms`). Handshakes and link frames are the link codec's; which
//! interest goes where is `federation`'s.

use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use tracing::{debug, info, warn};

use super::timers::Timer;
use super::Reactor;
use crate::connection::{Role, Stage};
use crate::ids::ConnKey;
use crate::protocol::encode_link_hello;

/// First wait before re-dialling a lost upstream; doubled per failure up to
/// `--link-backoff-max-ms`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// One `--upstream` and the state of its link.
#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    /// The connection, while one is open or opening.
    conn: Option<ConnKey>,
    /// Failed attempts since the link was last up.
    failures: u32,
}

/// Every upstream. See the module documentation.
#[derive(Debug)]
pub(super) struct Upstreams {
    list: Vec<Upstream>,
}

impl Upstreams {
    /// The upstreams to dial, none dialled yet.
    pub(super) fn new(addrs: &[SocketAddr]) -> Upstreams {
        Upstreams {
            list: addrs
                .iter()
                .map(|&addr| Upstream {
                    addr,
                    conn: None,
                    failures: 0,
                })
                .collect(),
        }
    }

    /// The connection of upstream `idx`, if one is open or opening.
    pub(super) fn conn(&self, idx: usize) -> Option<ConnKey> {
        self.list.get(idx).and_then(|u| u.conn)
    }

    /// The wait before attempt number `failures + 1`: `BACKOFF_BASE * 2^failures`,
    /// capped, then scaled by `jitter` in [0.5, 1) so that many leaves that lost the
    /// same hub do not all return at once.
    pub(super) fn backoff(failures: u32, cap: Duration, jitter: f64) -> Duration {
        let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.min(16));
        exp.min(cap).mul_f64(jitter.clamp(0.5, 1.0))
    }
}

impl Reactor {
    /// Dials every upstream; called once at start.
    pub(super) fn start_links(&mut self) {
        for idx in 0..self.upstreams.list.len() {
            self.dial(idx);
        }
    }

    /// Opens a non-blocking connection to upstream `idx` and queues the link `HELLO`.
    pub(super) fn dial(&mut self, idx: usize) {
        if self.control.deadline().is_some() {
            return; // shutting down
        }
        let Some(up) = self.upstreams.list.get(idx) else {
            return;
        };
        if up.conn.is_some() {
            return;
        }
        let addr = up.addr;
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                warn!(upstream = %addr, error = %e, "cannot dial upstream");
                return self.schedule_redial(idx);
            }
        };
        let key = match self.register_socket(&mut stream) {
            Ok(key) => key,
            Err(e) => {
                warn!(upstream = %addr, error = %e, "cannot register upstream connection");
                return self.schedule_redial(idx);
            }
        };
        let key = self.insert_connection(key, stream, addr, Stage::Dialing);
        let mut hello = Vec::new();
        let s = &self.core.settings;
        encode_link_hello(
            &mut hello,
            self.core.fed.name(),
            s.max_frame,
            s.upstream_token.as_deref(),
        );
        if let Some(conn) = self.conns.get_mut(key) {
            conn.set_role(Role::Link {
                upstream: Some(idx),
            });
            conn.out().push(&mut self.core.pool, &hello);
        }
        self.upstreams.list[idx].conn = Some(key);
        debug!(upstream = %addr, "dialling upstream");
    }

    /// Plans the next attempt for upstream `idx` (see [`Upstreams::backoff`]).
    pub(super) fn schedule_redial(&mut self, idx: usize) {
        if self.control.deadline().is_some() {
            return;
        }
        let cap = self.core.settings.link_backoff_max;
        let Some(up) = self.upstreams.list.get_mut(idx) else {
            return;
        };
        up.conn = None;
        let delay = Upstreams::backoff(up.failures, cap, 0.5 + fastrand::f64() / 2.0);
        up.failures = up.failures.saturating_add(1);
        self.timers.add(self.turn.now + delay, Timer::Redial(idx));
        info!(upstream = %up.addr, retry_in_ms = delay.as_millis() as u64, attempt = up.failures, "no link to upstream; will dial again");
    }

    /// Links that came up this turn reset their upstream's backoff.
    pub(super) fn on_links_up(&mut self) {
        for idx in std::mem::take(&mut self.turn.links_up) {
            if let Some(up) = self.upstreams.list.get_mut(idx) {
                up.failures = 0;
            }
        }
    }

    /// An event on a connection still completing its TCP handshake. Returns whether the
    /// connection is now usable.
    pub(super) fn finish_connect(&mut self, key: ConnKey) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        match conn.transport().connect_finished() {
            Ok(true) => {
                // A dialled link speaks first; it never awaits a HELLO.
                conn.advance(Stage::Open);
                self.turn.mark_flush(conn);
                true
            }
            Ok(false) => false,
            Err(e) => {
                debug!(upstream = %conn.peer(), error = %e, "upstream connect failed");
                self.turn.close_later(key);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let cap = Duration::from_millis(1000);
        assert_eq!(Upstreams::backoff(0, cap, 1.0), Duration::from_millis(100));
        assert_eq!(Upstreams::backoff(1, cap, 1.0), Duration::from_millis(200));
        assert_eq!(Upstreams::backoff(3, cap, 1.0), Duration::from_millis(800));
        assert_eq!(Upstreams::backoff(4, cap, 1.0), cap);
        assert_eq!(Upstreams::backoff(40, cap, 1.0), cap);
        assert_eq!(Upstreams::backoff(0, cap, 0.5), Duration::from_millis(50));
        // Jitter never takes a wait below half of its step.
        assert_eq!(Upstreams::backoff(2, cap, 0.1), Duration::from_millis(200));
    }
}
