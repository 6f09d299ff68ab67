//! One connection as the broker sees it, and the table that holds them all.
//!
//! Owns a connection's transport, the partial frame carried between reads, its write
//! queue, its own list of subscriptions, its wire protocol and its life ([`Stage`], which
//! only moves forward). Fields are private: the reactor, the core and the codecs change
//! a connection through methods that keep its invariants. It holds no reference to
//! other connections or to the router. It must never be dropped while a message is
//! being fanned out; connections leave the table only at the end of a loop turn.

mod subs;
mod table;
mod write_queue;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::Wire;
use crate::ids::ConnKey;
use crate::net::Transport;

pub use subs::SubList;
pub use table::Conns;
pub use write_queue::{ChunkPool, Flushed, WriteQueue, CHUNK_SIZE};

/// A subscription the connection holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The connection-local id the router stores with it.
    pub sid: u32,
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
    /// A connection turned away at the connection limit: it only receives its
    /// `ERROR limit` and is closed; it does not count as a client.
    Refused,
    /// A federation link to another broker. `upstream` is the index of the
    /// `--upstream` this broker dialled, or `None` for a link the peer opened.
    Link {
        /// Index into the broker's upstream list, for links this broker opened.
        upstream: Option<usize>,
    },
}

/// Where a connection is in its life. Stages only move forward (in declaration
/// order); [`Connection::advance`] refuses to go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// An outbound connection whose TCP handshake has not completed.
    Dialing,
    /// Reading commands, but only `HELLO` with the right token is accepted (the broker
    /// runs with `--token`).
    AwaitingHello {
        /// When it started waiting (the connection was accepted).
        since: Instant,
    },
    /// Reading commands and receiving messages.
    Open,
    /// The peer half-closed its side: every command read has been handled; the
    /// connection closes once its replies are written.
    PeerClosed,
    /// Being closed by the broker (an error, a limit, shutdown): its subscriptions are
    /// gone, input is discarded, queued output is written, then the write side is shut
    /// and the connection waits for the peer's EOF (so an unread request cannot turn
    /// the close into a reset that destroys the final frame). `deadline` bounds it.
    Closing {
        /// When to give up and close regardless.
        deadline: Instant,
        /// Whether to wait for the peer's EOF after shutting the write side.
        linger: bool,
        /// Whether the write side has been shut.
        shut: bool,
    },
}

impl Stage {
    fn rank(&self) -> u8 {
        match self {
            Stage::Dialing => 0,
            Stage::AwaitingHello { .. } => 1,
            Stage::Open => 2,
            Stage::PeerClosed => 3,
            Stage::Closing { .. } => 4,
        }
    }
}

/// An unfinished frame: its bytes so far, and when they last grew.
#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    since: Instant,
}

/// The per-connection time limits, checked by the reactor's sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// How long a connection may stay [`Stage::AwaitingHello`].
    pub auth: Duration,
    /// How long an unfinished frame may go without a new byte.
    pub frame: Duration,
    /// How long pending output may go without a byte accepted by the socket.
    pub write: Duration,
}

/// A per-connection deadline that has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A closing connection's grace period is over: remove it.
    CloseGrace,
    /// It did not authenticate in time.
    Auth,
    /// Its unfinished frame made no progress in time.
    Frame,
    /// Its output made no progress in time.
    Write,
}

/// One connection. See the module documentation.
pub struct Connection {
    key: ConnKey,
    transport: Transport,
    peer: SocketAddr,
    client_id: u64,
    name: Option<Box<str>>,
    role: Role,
    wire: Wire,
    stage: Stage,
    echo: bool,
    /// An incomplete frame kept between reads. `None` (nothing allocated) when the last
    /// read ended on a frame boundary, which is the common case; boxed so that an idle
    /// connection pays one pointer for it.
    partial: Option<Box<Partial>>,
    out: WriteQueue,
    subs: SubList,
    next_sid: u32,
    /// The publish this connection last received (per-connection delivery dedupe).
    last_publish: u64,
    on_flush_list: bool,
    on_read_list: bool,
    /// Since when pending output has had no byte accepted (None: none pending, or
    /// progress at the last flush).
    stall_since: Option<Instant>,
}

impl Connection {
    /// A new connection in `stage`, speaking `wire`.
    pub fn new(
        key: ConnKey,
        transport: Transport,
        peer: SocketAddr,
        client_id: u64,
        stage: Stage,
        wire: Wire,
    ) -> Self {
        Connection {
            key,
            transport,
            peer,
            client_id,
            name: None,
            role: Role::Client,
            wire,
            stage,
            echo: true,
            partial: None,
            out: WriteQueue::default(),
            subs: SubList::default(),
            next_sid: 1,
            last_publish: 0,
            on_flush_list: false,
            on_read_list: false,
            stall_since: None,
        }
    }

    /// The connection's key.
    #[inline]
    pub fn key(&self) -> ConnKey {
        self.key
    }

    /// The transport (every socket call goes through it).
    #[inline]
    pub fn transport(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// The transport and the write queue together, for a flush.
    #[inline]
    pub fn transport_and_out(&mut self) -> (&mut Transport, &mut WriteQueue) {
        (&mut self.transport, &mut self.out)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The id sent in `WELCOME`; unique for the broker's lifetime.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The name from `HELLO` (clients) or the peer broker's name (links).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Sets the name.
    pub fn set_name(&mut self, name: &str) {
        self.name = Some(name.into());
    }

    /// Client, refused, or federation link.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Sets the role (a client becoming a link, a connection being refused).
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
        if matches!(role, Role::Link { .. }) {
            self.wire = Wire::Link;
            self.echo = false;
        }
    }

    /// The wire protocol spoken.
    #[inline]
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Whether this connection is a federation link.
    #[inline]
    pub fn is_link(&self) -> bool {
        matches!(self.role, Role::Link { .. })
    }

    /// Whether it counts against `--max-connections`: accepted clients and links
    /// other brokers opened; not refused connections or links this broker dialled.
    pub fn counted(&self) -> bool {
        !matches!(self.role, Role::Refused | Role::Link { upstream: Some(_) })
    }

    /// The stage.
    #[inline]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Moves to a later stage; returns false (and changes nothing) for an earlier or
    /// equal one, so a connection's life only goes forward.
    pub fn advance(&mut self, to: Stage) -> bool {
        if to.rank() <= self.stage.rank() {
            return false;
        }
        self.stage = to;
        true
    }

    /// Mutable access to the closing state, if closing.
    pub fn closing_mut(&mut self) -> Option<(&mut bool, &mut bool)> {
        match &mut self.stage {
            Stage::Closing { linger, shut, .. } => Some((linger, shut)),
            _ => None,
        }
    }

    /// Whether it passed `HELLO` (always, on a broker without `--token`).
    #[inline]
    pub fn authenticated(&self) -> bool {
        !matches!(self.stage, Stage::AwaitingHello { .. })
    }

    /// Whether messages may still be queued to this connection.
    #[inline]
    pub fn receives(&self) -> bool {
        !matches!(self.stage, Stage::Closing { .. })
    }

    /// Whether input from this connection is still handled as commands.
    #[inline]
    pub fn handles_input(&self) -> bool {
        matches!(self.stage, Stage::Open | Stage::AwaitingHello { .. })
    }

    /// Whether the connection receives messages it published itself.
    #[inline]
    pub fn echo(&self) -> bool {
        self.echo
    }

    /// Sets `echo`.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// The unsent output.
    #[inline]
    pub fn out(&mut self) -> &mut WriteQueue {
        &mut self.out
    }

    /// Unsent output bytes.
    #[inline]
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Whether an incomplete frame is carried between reads.
    #[inline]
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of the incomplete frame.
    #[inline]
    pub fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// Takes the incomplete frame (leaving none); `held` (the broker-wide count of
    /// unfinished input) goes down by its length.
    pub fn take_partial(&mut self, held: &mut usize) -> Vec<u8> {
        match self.partial.take() {
            Some(p) => {
                *held -= p.bytes.len();
                p.bytes
            }
            None => Vec::new(),
        }
    }

    /// Stores the incomplete frame after a read at `now` that added to it; `held` goes
    /// up by its length. Call only with no frame stored (take it first).
    pub fn put_partial(&mut self, buf: Vec<u8>, held: &mut usize, now: Instant) {
        debug_assert!(self.partial.is_none());
        if buf.is_empty() {
            return;
        }
        *held += buf.len();
        self.partial = Some(Box::new(Partial {
            bytes: buf,
            since: now,
        }));
    }

    /// Records a flush at `now` that wrote `written` bytes. A closing connection that
    /// is still taking its output gets `grace` more time from now.
    #[inline]
    pub fn note_flush(&mut self, written: usize, now: Instant, grace: Duration) {
        if written > 0 {
            if let Stage::Closing { deadline, .. } = &mut self.stage {
                *deadline = now + grace;
            }
        }
        self.stall_since = if self.out.is_empty() {
            None
        } else if written > 0 {
            Some(now)
        } else {
            self.stall_since.or(Some(now))
        };
    }

    /// Which of its deadlines has passed at `now`, if any.
    pub fn due(&self, now: Instant, limits: &Deadlines) -> Option<Due> {
        let passed =
            |since: Instant, limit: Duration| now.saturating_duration_since(since) >= limit;
        match self.stage {
            Stage::Closing { deadline, .. } => (deadline <= now).then_some(Due::CloseGrace),
            Stage::Dialing => None,
            Stage::AwaitingHello { since } if passed(since, limits.auth) => Some(Due::Auth),
            _ if self
                .partial
                .as_ref()
                .is_some_and(|p| passed(p.since, limits.frame)) =>
            {
                Some(Due::Frame)
            }
            _ if self.stall_since.is_some_and(|t| passed(t, limits.write)) => Some(Due::Write),
            _ => None,
        }
    }

    /// The subscriptions, each pattern at most once.
    pub fn subs(&self) -> &[Subscription] {
        self.subs.as_slice()
    }

    /// The subscription to exactly `pattern`, if held.
    pub fn find_sub(&self, pattern: &str) -> Option<&Subscription> {
        self.subs.find(pattern)
    }

    /// Records a new subscription and returns it (the caller checked it is new).
    pub fn add_sub(&mut self, pattern: &str, wildcard: bool) -> &Subscription {
        let sid = self.next_sid;
        self.next_sid = self.next_sid.wrapping_add(1);
        self.subs.push(Subscription {
            sid,
            pattern: pattern.into(),
            wildcard,
        })
    }

    /// Forgets the subscription to exactly `pattern`.
    pub fn remove_sub(&mut self, pattern: &str) -> Option<Subscription> {
        self.subs.remove(pattern)
    }

    /// Forgets every subscription.
    pub fn take_subs(&mut self) -> Vec<Subscription> {
        self.subs.take()
    }

    /// Whether this connection already received publish number `n`; marks it if not.
    /// Per-connection delivery: one copy however many subscriptions match.
    #[inline]
    pub fn first_delivery_of(&mut self, n: u64) -> bool {
        if self.last_publish == n {
            return false;
        }
        self.last_publish = n;
        true
    }

    /// Marks the connection for this turn's flush; false if it already was.
    #[inline]
    pub fn mark_flush(&mut self) -> bool {
        !std::mem::replace(&mut self.on_flush_list, true)
    }

    /// Clears the flush mark (the flush is handling it).
    #[inline]
    pub fn unmark_flush(&mut self) {
        self.on_flush_list = false;
    }

    /// Marks the connection for a deferred read; false if it already was.
    #[inline]
    pub fn mark_read(&mut self) -> bool {
        !std::mem::replace(&mut self.on_read_list, true)
    }

    /// Whether a deferred read is due.
    #[inline]
    pub fn read_marked(&self) -> bool {
        self.on_read_list
    }

    /// Clears the deferred-read mark.
    #[inline]
    pub fn unmark_read(&mut self) {
        self.on_read_list = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(stage: Stage) -> Connection {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let stream = mio::net::TcpStream::from_std(stream);
        Connection::new(
            ConnKey::from(1),
            Transport::Tcp(stream),
            addr,
            1,
            stage,
            Wire::Json,
        )
    }

    #[test]
    fn deadlines_come_due_in_their_own_time() {
        let limits = Deadlines {
            auth: Duration::from_secs(5),
            frame: Duration::from_secs(30),
            write: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut c = conn(Stage::AwaitingHello { since: t0 });
        assert_eq!(c.due(t0, &limits), None);
        assert_eq!(c.due(t0 + Duration::from_secs(6), &limits), Some(Due::Auth));
        c.advance(Stage::Open);
        let mut held = 0;
        c.put_partial(b"{\"comm".to_vec(), &mut held, t0);
        assert_eq!(held, 6);
        assert_eq!(c.due(t0 + Duration::from_secs(29), &limits), None);
        assert_eq!(
            c.due(t0 + Duration::from_secs(30), &limits),
            Some(Due::Frame)
        );
        let buf = c.take_partial(&mut held);
        assert_eq!((buf.len(), held), (6, 0));
        assert_eq!(c.due(t0 + Duration::from_secs(60), &limits), None);
        let mut pool = ChunkPool::default();
        c.out().push(&mut pool, b"owed\n");
        c.note_flush(0, t0, Duration::ZERO);
        c.note_flush(0, t0 + Duration::from_secs(5), Duration::ZERO);
        assert_eq!(
            c.due(t0 + Duration::from_secs(10), &limits),
            Some(Due::Write)
        );
        c.note_flush(1, t0 + Duration::from_secs(10), Duration::ZERO);
        assert_eq!(
            c.due(t0 + Duration::from_secs(15), &limits),
            None,
            "progress resets it"
        );
        c.out().release(&mut pool);
    }

    #[test]
    fn stages_only_move_forward() {
        let mut c = conn(Stage::AwaitingHello {
            since: Instant::now(),
        });
        assert!(!c.authenticated());
        assert!(c.advance(Stage::Open));
        assert!(c.authenticated() && c.handles_input());
        assert!(!c.advance(Stage::AwaitingHello {
            since: Instant::now()
        }));
        assert!(c.advance(Stage::PeerClosed));
        assert!(!c.advance(Stage::Open));
        let closing = Stage::Closing {
            deadline: Instant::now(),
            linger: true,
            shut: false,
        };
        assert!(c.advance(closing));
        assert!(!c.receives());
        assert!(!c.advance(closing), "a second close changes nothing");
    }

    #[test]
    fn per_connection_delivery_is_once_per_publish() {
        let mut c = conn(Stage::Open);
        assert!(c.first_delivery_of(7));
        assert!(!c.first_delivery_of(7));
        assert!(c.first_delivery_of(8));
    }

    #[test]
    fn refused_and_dialled_connections_do_not_count() {
        let mut c = conn(Stage::Open);
        assert!(c.counted());
        c.set_role(Role::Refused);
        assert!(!c.counted());
        c.set_role(Role::Link { upstream: Some(0) });
        assert!(!c.counted() && c.is_link() && c.wire() == Wire::Link && !c.echo());
        c.set_role(Role::Link { upstream: None });
        assert!(c.counted());
    }
}
