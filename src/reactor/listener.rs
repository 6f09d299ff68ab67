//! Accepting connections: the connection limit and fd exhaustion.
//!
//! Owns the listening socket and the accept loop's state: whether more connections
//! may be waiting, whether accepting is paused, and a spare fd. It must never spin or
//! exit on `EMFILE`/`ENFILE`: it spends the spare fd to accept and refuse one waiting
//! connection, then pauses accepting briefly. A connection over `--max-connections` is
//! accepted, told why by its codec's goodbye, and closed gracefully.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use tracing::{debug, warn};

use super::timers::Timer;
use super::Reactor;
use crate::codec::{self, Wire};
use crate::connection::{Connection, Role, Stage};
use crate::core::CloseReason;
use crate::ids::ConnKey;
use crate::logsafe::Throttle;
use crate::net::Transport;
use crate::protocol::ErrorCode;

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

/// The listening socket and its accept state. See the module documentation.
pub(super) struct Listener {
    socket: Option<TcpListener>,
    /// More connections may be waiting (the accept batch ran out).
    pending: bool,
    /// Accepting is paused until an [`Timer::AcceptResume`].
    paused: bool,
    /// An fd held in reserve so that, when the process runs out, one can be freed to
    /// accept and refuse a connection instead of leaving it hanging in the backlog.
    spare_fd: Option<File>,
    fd_warn: Throttle,
}

impl Listener {
    /// Registers `socket` for readiness under `token`.
    pub(super) fn new(mut socket: TcpListener, poll: &Poll, token: Token) -> io::Result<Listener> {
        poll.registry()
            .register(&mut socket, token, Interest::READABLE)?;
        Ok(Listener {
            socket: Some(socket),
            pending: false,
            paused: false,
            spare_fd: File::open("/dev/null").ok(),
            fd_warn: Throttle::new(FD_WARN_INTERVAL),
        })
    }

    /// Whether to accept again this turn without a readiness event.
    pub(super) fn wants_accept(&self) -> bool {
        self.pending && !self.paused && self.socket.is_some()
    }

    /// Resumes accepting after a pause.
    pub(super) fn resume(&mut self) {
        self.paused = false;
        self.pending = true;
    }

    /// Stops listening (shutdown).
    pub(super) fn close(&mut self, poll: &Poll) {
        if let Some(mut socket) = self.socket.take() {
            let _ = poll.registry().deregister(&mut socket);
        }
        self.pending = false;
    }

    /// Takes a spare fd back if it was lost while the process was out of fds.
    pub(super) fn restore_spare_fd(&mut self) {
        if self.spare_fd.is_none() {
            self.spare_fd = File::open("/dev/null").ok();
        }
    }
}

impl Reactor {
    /// Accepts waiting connections, up to a batch per turn.
    pub(super) fn accept_ready(&mut self) {
        if self.listener.paused {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(socket) = &self.listener.socket else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener.pending = false;
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
        self.listener.pending = true;
    }

    /// Out of fds: frees the spare fd to accept one waiting connection, tells it
    /// `ERROR limit`, closes it, and takes the spare back, so waiting clients get an
    /// answer instead of hanging in the backlog. Returns whether to keep accepting;
    /// when even the spare cannot be had (the whole system is out of fds), accepting
    /// pauses briefly instead of spinning.
    fn refuse_with_spare_fd(&mut self, err: &io::Error) -> bool {
        let now = self.turn.now;
        let l = &mut self.listener;
        if l.fd_warn.allow(now).is_some() {
            warn!(
                error = %err,
                clients = self.core.clients,
                "out of file descriptors; refusing new connections with ERROR limit"
            );
        }
        let pause = |l: &mut Listener, timers: &mut super::Timers| {
            l.paused = true;
            l.pending = false;
            timers.add(now + FD_EXHAUSTED_PAUSE, Timer::AcceptResume);
        };
        if l.spare_fd.take().is_none() {
            l.spare_fd = File::open("/dev/null").ok();
            pause(l, &mut self.timers);
            return false;
        }
        let accepted = l.socket.as_ref().map(|s| s.accept());
        let keep_going = match accepted {
            Some(Ok((mut stream, _))) => {
                let mut frame = Vec::new();
                crate::protocol::encode_error(
                    &mut frame,
                    ErrorCode::Limit,
                    "server is out of file descriptors",
                    None,
                );
                let _ = stream.write(&frame);
                self.core.stats.accepted += 1;
                self.core.stats.refused += 1;
                self.core.stats.count_error(ErrorCode::Limit);
                true // the stream is closed here, before the spare is taken back
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                l.pending = false;
                false
            }
            _ => {
                pause(l, &mut self.timers);
                false
            }
        };
        l.spare_fd = File::open("/dev/null").ok();
        keep_going
    }

    /// Registers `stream` for readiness under the slot of the key its connection will
    /// get (the caller inserts it next) and turns Nagle off: frames are batched by the
    /// write queue, so Nagle would only add latency.
    pub(super) fn register_socket(&mut self, stream: &mut TcpStream) -> io::Result<ConnKey> {
        let _ = stream.set_nodelay(true);
        let key = self.conns.vacant_key();
        self.poll.registry().register(
            stream,
            Token(key.slot()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(key)
    }

    /// Inserts a connection registered by [`Reactor::register_socket`] with a fresh
    /// client id.
    pub(super) fn insert_connection(
        &mut self,
        key: ConnKey,
        stream: TcpStream,
        peer: SocketAddr,
        stage: Stage,
    ) -> ConnKey {
        let client_id = self.core.next_client_id();
        let conn = Connection::new(
            key,
            Transport::Tcp(stream),
            peer,
            client_id,
            stage,
            Wire::Json,
        );
        self.conns.insert(conn)
    }

    /// Registers a new connection, or refuses it at the connection limit.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        self.core.stats.accepted += 1;
        let key = match self.register_socket(&mut stream) {
            Ok(key) => key,
            Err(e) => {
                warn!(error = %e, %peer, "cannot register connection");
                return;
            }
        };
        let over_limit = self.core.clients >= self.core.settings.max_connections;
        let stage = match self.core.settings.token {
            Some(_) => Stage::AwaitingHello {
                since: self.turn.now,
            },
            None => Stage::Open,
        };
        let key = self.insert_connection(key, stream, peer, stage);
        if over_limit {
            self.core.stats.refused += 1;
            warn!(%peer, max_connections = self.core.settings.max_connections, "connection refused: connection limit reached");
            if let Some(conn) = self.conns.get_mut(key) {
                conn.set_role(Role::Refused);
            }
            let reason = CloseReason::ConnectionLimit;
            self.core.reply.clear();
            if let Some(code) =
                codec::encode_goodbye(Wire::Json, &reason, None, &mut self.core.reply)
            {
                self.core.stats.count_error(code);
            }
            if let Some(conn) = self.conns.get_mut(key) {
                conn.out().push(&mut self.core.pool, &self.core.reply);
            }
            self.core
                .begin_close(&mut self.conns, &mut self.turn, key, true);
        } else {
            self.core.clients += 1;
            debug!(%peer, clients = self.core.clients, "connection accepted");
        }
    }
}
