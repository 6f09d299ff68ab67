//! The broker's semantics, independent of any wire format.
//!
//! Owns what every codec asks for in broker terms: subscribe, unsubscribe, publish and
//! close as typed operations with typed outcomes, over the router, the federation
//! table, the limits and the counters. Codecs turn their frames into these calls and
//! the outcomes into their replies; the reactor moves bytes. The core never encodes a
//! client reply, never parses a frame and never does I/O: output reaches a connection
//! only through its codec's encoders and its write queue.
//!
//! - `subs`: the one place a subscription is added or removed.
//! - `fanout`: delivering one message to every matching subscription.
//! - `close`: [`CloseReason`], the one vocabulary for ending a connection.
//! - `memory`: the broker-wide bound on unfinished input and queued output.
//! - `snapshot`: [`Snapshot`], the broker's counters as one value (STATS, monitoring).
//! - `turn`: [`Turn`], one loop turn's work lists and clock.
//! - `settings`: [`Settings`], limits and identity.

mod close;
mod fanout;
mod memory;
mod run;
mod settings;
mod snapshot;
mod subs;
mod turn;

use std::time::Duration;

use tracing::info;

pub use close::CloseReason;
pub use fanout::{fan_out, Msg, Origin, Payload};
pub use run::{fan_out_run, Run, RUN_MAX_BYTES};
pub use settings::Settings;
pub use snapshot::Snapshot;
pub use turn::{Turn, READ_CHUNK};

use crate::codec;
use crate::connection::{ChunkPool, Conns, Stage};
use crate::federation::Federation;
use crate::ids::ConnKey;
use crate::logsafe::Throttle;
use crate::router::{Router, SubRef};
use crate::stats::Stats;

/// How long a connection being closed may go without taking any of its last output
/// (or, once that is written, without sending its EOF) before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Shortest interval between two rate-limited warnings of one kind.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A request the broker turned down, the connection staying open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A channel or pattern breaks the channel rules.
    BadChannel(String),
    /// A configured limit was reached.
    Limit(String),
}

/// Broker state shared by every connection. See the module documentation.
pub struct Core {
    /// Limits and identity.
    pub settings: Settings,
    /// The subscription index.
    pub router: Router<SubRef>,
    /// Federation: interest table, loop prevention, dedupe.
    pub fed: Federation,
    /// Counters.
    pub stats: Stats,
    /// Output buffers shared by every connection's write queue.
    pub pool: ChunkPool,
    /// Connections counted against `--max-connections` now.
    pub clients: usize,
    /// Bytes of unfinished input frames held by all connections.
    pub input_held: usize,
    next_client_id: u64,
    /// Scratch and frame cache for fan-out (`None` only while a fan-out holds it).
    fanout: Option<Box<fanout::Scratch>>,
    /// Scratch for encoding one reply.
    pub reply: Vec<u8>,
    /// Rate limits of repeated warnings.
    pub throttles: Throttles,
}

/// Rate limits of warnings that a peer could otherwise repeat at will.
pub struct Throttles {
    /// Messages too large for a link's peer.
    pub too_large: Throttle,
    /// Frames refused from links.
    pub refused: Throttle,
}

impl Core {
    /// A broker with no connections.
    pub fn new(settings: Settings) -> Core {
        Core {
            fed: Federation::new(&settings.name),
            settings,
            router: Router::new(),
            stats: Stats::default(),
            pool: ChunkPool::default(),
            clients: 0,
            input_held: 0,
            next_client_id: 1,
            fanout: Some(Box::default()),
            reply: Vec::with_capacity(256),
            throttles: Throttles {
                too_large: Throttle::new(LOG_EVERY),
                refused: Throttle::new(LOG_EVERY),
            },
        }
    }

    /// The next client id (sent in `WELCOME`; unique for the broker's lifetime).
    pub fn next_client_id(&mut self) -> u64 {
        let id = self.next_client_id;
        self.next_client_id += 1;
        id
    }

    /// Queues `self.reply` to `key`; a connection pushed past `--max-pending` by it is
    /// closed as a slow consumer.
    pub fn queue_reply(&mut self, conns: &mut Conns, turn: &mut Turn, key: ConnKey) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        conn.out().push(&mut self.pool, &self.reply);
        if conn.pending() > self.settings.max_pending {
            return self.slow_consumer(conns, turn, key);
        }
        turn.mark_flush(conn);
    }

    /// A connection's unsent output passed `--max-pending`.
    pub fn slow_consumer(&mut self, conns: &mut Conns, turn: &mut Turn, key: ConnKey) {
        let max_pending = self.settings.max_pending;
        self.shed_output(conns, turn, key, &CloseReason::SlowConsumer { max_pending });
    }

    /// Closes a connection whose output is the problem (over `--max-pending`, stalled
    /// past `--write-deadline`, the largest holder over `--max-memory`): drop what it
    /// has not started receiving, then its codec's goodbye for `reason`. A link is
    /// counted as a slow link (a dialled link reconnects).
    pub fn shed_output(
        &mut self,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
        reason: &CloseReason,
    ) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if !conn.receives() {
            return;
        }
        if conn.is_link() {
            tracing::warn!(link = %conn.label(), "federation link is a slow consumer: {reason}; closing it");
            self.fed.count_slow(key);
        } else {
            tracing::warn!(conn = %conn.label(), "slow consumer: {reason}; closing");
        }
        conn.out().cut_after_current_frame(&mut self.pool);
        self.close(conns, turn, key, reason);
    }

    /// Closes a connection with its codec's goodbye for `reason`, queued after the
    /// output it is owed: its subscriptions end now, and it is removed once that is
    /// written and the peer has ended its side (so an unread request cannot turn the
    /// close into a reset that destroys the goodbye), or once it takes nothing for
    /// [`CLOSE_GRACE`]. A connection already closing is left alone. (A shutdown closes
    /// without a goodbye through [`Core::begin_close`].)
    pub fn close(
        &mut self,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
        reason: &CloseReason,
    ) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if !conn.receives() {
            return;
        }
        info!(conn = %conn.label(), "closing connection: {reason}");
        self.reply.clear();
        if let Some(code) = codec::encode_goodbye(conn.wire(), reason, None, &mut self.reply) {
            self.stats.count_error(code);
        }
        conn.out().push(&mut self.pool, &self.reply);
        self.begin_close(conns, turn, key, true);
    }

    /// Moves a connection to [`Stage::Closing`] (its goodbye, if any, already queued).
    pub fn begin_close(&mut self, conns: &mut Conns, turn: &mut Turn, key: ConnKey, linger: bool) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if !conn.receives() {
            return;
        }
        drop(conn.take_partial(&mut self.input_held));
        conn.advance(Stage::Closing {
            deadline: turn.now + CLOSE_GRACE,
            linger,
            shut: false,
        });
        self.drop_subscriptions(conns, turn, key);
        if let Some(conn) = conns.get_mut(key) {
            turn.mark_flush(conn);
        }
    }

    /// The broker's counters as one value.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self)
    }
}
