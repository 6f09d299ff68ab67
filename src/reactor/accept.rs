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
/// How long accepting pauses when not even the spare fd can be had.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// Least time between two "out of file descriptors" warnings.
const FD_WARN_INTERVAL: Duration = Duration::from_secs(1);

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
                    if !self.refuse_with_spare_fd(&e) {
                        return;
                    }
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
        self.accept_pending = true;
    }

    /// Out of fds: frees the spare fd to accept one waiting connection, tells it
    /// `ERROR limit`, closes it, and takes the spare back, so waiting clients get an
    /// answer instead of hanging in the backlog. Returns whether to keep accepting;
    /// when even the spare cannot be had (the whole system is out of fds), accepting
    /// pauses briefly instead of spinning.
    fn refuse_with_spare_fd(&mut self, err: &io::Error) -> bool {
        let now = Instant::now();
        if self
            .fd_warned_at
            .is_none_or(|t| now.duration_since(t) >= FD_WARN_INTERVAL)
        {
            self.fd_warned_at = Some(now);
            warn!(
                error = %err,
                clients = self.clients,
                "out of file descriptors; refusing new connections with ERROR limit"
            );
        }
        if self.spare_fd.take().is_none() {
            self.spare_fd = File::open("/dev/null").ok();
            self.accept_paused_until = Some(now + FD_EXHAUSTED_PAUSE);
            self.accept_pending = false;
            return false;
        }
        let accepted = self.listener.as_ref().map(|l| l.accept());
        let keep_going = match accepted {
            Some(Ok((mut stream, _))) => {
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
                true // the stream is closed here, before the spare is taken back
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.accept_pending = false;
                false
            }
            _ => {
                self.accept_paused_until = Some(now + FD_EXHAUSTED_PAUSE);
                self.accept_pending = false;
                false
            }
        };
        self.spare_fd = File::open("/dev/null").ok();
        keep_going
    }

    /// Registers `stream` for readiness under the slab key its connection will get
    /// (the caller inserts it next) and turns Nagle off: frames are batched by the
    /// write queue, so Nagle would only add latency.
    pub(super) fn register_socket(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        let _ = stream.set_nodelay(true);
        let id = self.conns.vacant_key();
        self.poll.registry().register(
            stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(id)
    }

    /// Inserts a connection registered by [`Reactor::register_socket`], with a fresh
    /// client id; returns its slab key.
    pub(super) fn insert_connection(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        authenticated: bool,
        configure: impl FnOnce(&mut Connection),
    ) -> usize {
        let client_id = self.next_client_id;
        self.next_client_id += 1;
        let mut conn = Connection::new(stream, peer, client_id, authenticated);
        configure(&mut conn);
        self.conns.insert(conn)
    }

    /// Registers a new connection, or refuses it at the connection limit.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        self.stats.accepted += 1;
        if let Err(e) = self.register_socket(&mut stream) {
            warn!(error = %e, %peer, "cannot register connection");
            return;
        }
        let over_limit = self.clients >= self.settings.max_connections;
        let authenticated = self.settings.token.is_none();
        let id = self.insert_connection(stream, peer, authenticated, |conn| {
            conn.counted = !over_limit;
        });
        if over_limit {
            self.stats.refused += 1;
            warn!(%peer, max_connections = self.settings.max_connections, "connection refused: connection limit reached");
            self.send_error(id, ErrorCode::Limit, "too many connections", None);
            self.begin_close(id, true);
        } else {
            self.clients += 1;
            debug!(%peer, clients = self.clients, "connection accepted");
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
