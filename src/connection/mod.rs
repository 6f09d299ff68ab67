//! One client connection as the broker sees it.
//!
//! Owns the socket, the partial frame carried between reads, the write queue, the
//! connection's own list of subscriptions, and its lifecycle ([`Phase`]). It holds no
//! reference to other connections or to the router: the reactor moves data between
//! them. It must never be dropped while the reactor is fanning out a message; the
//! reactor closes connections only at the end of a loop turn.

mod write_queue;

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

pub use write_queue::{ChunkPool, Flushed, WriteQueue, CHUNK_SIZE};

/// A subscription the connection holds: the pattern text and whether it has wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Channel or pattern, exactly as subscribed.
    pub pattern: Box<str>,
    /// Whether it holds `*` or `>` tokens (decides where the router keeps it).
    pub wildcard: bool,
}

/// What is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client (or a broker that has not yet said it is one).
    Client,
    /// A federation link to another broker. `upstream` is the index of the
    /// `--upstream` this broker dialled, or `None` for a link the peer opened.
    Link {
        /// Index into the broker's upstream list, for links this broker opened.
        upstream: Option<usize>,
    },
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading commands and receiving messages.
    Open,
    /// The peer half-closed its side: every command read has been handled; the
    /// connection closes once its replies are written.
    PeerClosed,
    /// Being closed by the broker (an error, a limit, shutdown): its subscriptions are
    /// gone, input is discarded, queued output is written, then the write side is shut
    /// and the connection waits for the peer's EOF (so an unread request cannot turn
    /// the close into a reset that destroys the final `ERROR`). `deadline` bounds it.
    Closing {
        /// When to give up and close regardless.
        deadline: Instant,
        /// Whether to wait for the peer's EOF after shutting the write side.
        linger: bool,
        /// Whether the write side has been shut.
        shut: bool,
    },
}

/// One connection. Fields are public to the reactor, which is its only user.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// The peer's address, for logs.
    pub peer: SocketAddr,
    /// The id sent in `WELCOME`; unique for the broker's lifetime.
    pub client_id: u64,
    /// Name from `HELLO`, for logs.
    pub name: Option<Box<str>>,
    /// Bytes of an incomplete frame, kept between reads. Empty (unallocated) when the
    /// last read ended on a frame boundary, which is the common case.
    pub partial: Vec<u8>,
    /// Unsent output.
    pub out: WriteQueue,
    /// The connection's subscriptions, each at most once.
    pub subs: Vec<Subscription>,
    /// Whether the connection receives messages it published itself.
    pub echo: bool,
    /// Whether it has passed `HELLO` with the right token (always true without
    /// `--token`).
    pub authenticated: bool,
    /// Lifecycle.
    pub phase: Phase,
    /// Already on the reactor's flush list this turn.
    pub flush_queued: bool,
    /// Already on the reactor's list of connections with unread input.
    pub read_queued: bool,
    /// Client or federation link.
    pub role: Role,
    /// An outbound connection whose TCP handshake has not completed yet.
    pub connecting: bool,
    /// Counts against `--max-connections` (false for a refused connection on its way
    /// out).
    pub counted: bool,
}

impl Connection {
    /// A freshly accepted connection.
    pub fn new(stream: TcpStream, peer: SocketAddr, client_id: u64, authenticated: bool) -> Self {
        Connection {
            stream,
            peer,
            client_id,
            name: None,
            partial: Vec::new(),
            out: WriteQueue::default(),
            subs: Vec::new(),
            echo: true,
            authenticated,
            phase: Phase::Open,
            flush_queued: false,
            read_queued: false,
            counted: true,
            role: Role::Client,
            connecting: false,
        }
    }

    /// Whether messages may still be queued to this connection.
    pub fn receives(&self) -> bool {
        !matches!(self.phase, Phase::Closing { .. })
    }

    /// Whether input from this connection is still handled as commands.
    pub fn handles_input(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Whether this connection is a federation link.
    pub fn is_link(&self) -> bool {
        matches!(self.role, Role::Link { .. })
    }

    /// Index of `pattern` in this connection's subscriptions.
    pub fn find_sub(&self, pattern: &str) -> Option<usize> {
        self.subs.iter().position(|s| &*s.pattern == pattern)
    }

    /// A short label for logs: client id, name when known (escaped), and peer address.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!(
                "#{} {} ({})",
                self.client_id,
                crate::logsafe::Escaped(name),
                self.peer
            ),
            None => format!("#{} ({})", self.client_id, self.peer),
        }
    }
}
