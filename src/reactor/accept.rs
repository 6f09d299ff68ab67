//! Accepting connections: the connection limit and fd exhaustion.
//!
//! Owns the accept loop. It must never spin or exit on `EMFILE`/`ENFILE`: it spends
//! the spare fd to accept and refuse one waiting connection, then pauses accepting
//! briefly. A connection over `--max-connections` is accepted, told `ERROR limit`, and
//! closed gracefully.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use tracing::{debug, warn};

use super::{Reactor, CLOSE_GRACE};
use crate::connection::{Connection, Phase};
use crate::protocol::{encode_error, ErrorCode};

/// Connections accepted per loop turn before other work gets a turn.
const ACCEPT_BATCH: usize = 256;
/// How long accepting pauses after the process ran out of fds.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// Whether an accept error means the process or system is out of file descriptors.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == 24 || code == 23) // EMFILE, ENFILE
}

impl Reactor {
    /// Accepts waiting connections, up to a batch per turn.
    pub(super) fn accept_ready(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if is_fd_exhaustion(&e) => {
                    self.on_fd_exhausted(&e);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
        self.accept_pending = true;
    }

    /// Out of fds: refuse one waiting connection using the spare fd, then pause.
    fn on_fd_exhausted(&mut self, err: &io::Error) {
        warn!(
            error = %err,
            clients = self.clients,
            "out of file descriptors; refusing connections for a moment"
        );
        self.spare_fd = None;
        if let Some(listener) = &self.listener {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut frame = Vec::new();
                encode_error(
                    &mut frame,
                    ErrorCode::Limit,
                    "server is out of file descriptors",
                    None,
                );
                let _ = stream.write(&frame);
                self.stats.refused += 1;
                self.stats.count_error(ErrorCode::Limit);
            }
        }
        self.spare_fd = File::open("/dev/null").ok();
        self.accept_paused_until = Some(Instant::now() + FD_EXHAUSTED_PAUSE);
        self.accept_pending = false;
    }

    /// Registers a new connection, or refuses it at the connection limit.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        self.stats.accepted += 1;
        // Frames are batched by the write queue; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(error = %e, %peer, "cannot register connection");
            return;
        }
        let over_limit = self.clients >= self.settings.max_connections;
        let client_id = self.next_client_id;
        self.next_client_id += 1;
        let authenticated = self.settings.token.is_none();
        let mut conn = Connection::new(stream, peer, client_id, authenticated);
        if over_limit {
            conn.counted = false;
            entry.insert(conn);
            self.stats.refused += 1;
            warn!(%peer, max_connections = self.settings.max_connections, "connection refused: connection limit reached");
            self.send_error(id, ErrorCode::Limit, "too many connections", None);
            self.begin_close(id, true);
        } else {
            entry.insert(conn);
            self.clients += 1;
            debug!(client_id, %peer, clients = self.clients, "connection accepted");
        }
    }

    /// Moves a connection into [`Phase::Closing`]: its subscriptions are dropped at
    /// once, its queued output is still written, then it is closed (after the peer's
    /// EOF when `linger`).
    pub(super) fn begin_close(&mut self, id: usize, linger: bool) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing { .. }) {
            return;
        }
        conn.partial = Vec::new();
        self.drop_subscriptions(id);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let deadline = Instant::now() + CLOSE_GRACE;
        conn.phase = Phase::Closing {
            deadline,
            linger,
            shut: false,
        };
        self.closing.push_back((deadline, id, conn.client_id));
        self.queue_flush(id);
    }
}
