//! Delivering a run of publishes at once: consecutive messages from one client to one
//! channel, read in one go.
//!
//! Owns [`fan_out_run`]: one router lookup for the whole run, then, per receiver, the
//! run's frames pushed as one piece (encoded straight into the queue of a single
//! receiver, copied below [`SHARE_THRESHOLD`] or shared by reference above it) instead
//! of one lookup and one push per message. A federation link gets one `ROUTE` per
//! message, each with its own sequence number and checked against the size its peer
//! accepts. Each queue receives the same bytes in the same order as
//! message-by-message fan-out would give it. It never allocates per delivery and never
//! writes to a socket.

use std::rc::Rc;

use super::fanout::{fits_peer, SHARE_THRESHOLD};
use super::{fan_out, Core, Msg, Origin, Payload, Turn};
use crate::codec::{self, Delivery, Wire};
use crate::connection::{Connection, Conns, CHUNK_SIZE};
use crate::ids::ConnKey;

/// Most bytes the frames of one run may take: one pooled chunk, so that a single
/// receiver's frames are encoded straight into its queue.
pub const RUN_MAX_BYTES: usize = CHUNK_SIZE;

/// Consecutive publishes by one client to one plain channel, each payload one JSON
/// value, borrowed from the bytes they were read in.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The channel, validated and plain ([`crate::protocol::is_plain`]).
    pub channel: &'a str,
    /// The publisher.
    pub from: ConnKey,
    /// The bytes the payloads lie in.
    pub data: &'a [u8],
    /// Each payload's start and end in `data`, in publish order.
    pub payloads: &'a [(usize, usize)],
}

impl<'a> Run<'a> {
    /// Message `i` of the run.
    #[inline]
    pub fn msg(&self, i: usize) -> Msg<'a> {
        let (start, end) = self.payloads[i];
        Msg {
            channel: self.channel,
            plain: true,
            payload: Payload {
                bytes: &self.data[start..end],
                json: true,
            },
            origin: Origin::Client(self.from),
        }
    }

    /// The messages, in publish order.
    pub fn msgs(&self) -> impl Iterator<Item = Msg<'a>> + '_ {
        (0..self.payloads.len()).map(|i| self.msg(i))
    }
}

/// Queues every message of `run` to every matching subscription, as calling
/// [`fan_out`] for each message in turn would (see the module documentation).
/// Returns the deliveries queued (a link counts once per message).
pub fn fan_out_run(core: &mut Core, conns: &mut Conns, turn: &mut Turn, run: &Run<'_>) -> usize {
    let n = run.payloads.len();
    if n == 1 {
        return fan_out(core, conns, turn, &run.msg(0));
    }
    core.stats.published += n as u64;
    let mut s = core.fanout.take().unwrap_or_default();
    s.matches.clear();
    let may_repeat = core.router.lookup(run.channel, &mut s.matches);
    s.publish_no += 1;
    let max_pending = core.settings.max_pending;
    let matches = std::mem::take(&mut s.matches);
    let single = matches.len() == 1;
    let mut frames = Frames {
        body: std::mem::take(&mut s.run_body),
        shared: None,
        link: std::mem::take(&mut s.run_link),
        first_seq: None,
    };
    frames.body.clear();
    let mut delivered = 0;
    // The receiver checks repeat `fanout::deliver_all`'s on purpose: sharing them as an
    // inlined function cost that loop 2 instructions per delivery (callgrind, fan-out
    // 1 -> 100: 12,995 -> 13,195 per frame).
    for sub in &matches {
        let key = sub.conn;
        let Some(conn) = conns.get_mut(key) else {
            continue;
        };
        if !conn.receives() || (key == run.from && !conn.echo()) {
            continue;
        }
        let wire = conn.wire();
        if may_repeat
            && wire.delivery() == Delivery::PerConnection
            && !conn.first_delivery_of(s.publish_no)
        {
            continue;
        }
        let queued = match wire {
            Wire::Json if single => {
                let len = codec::run::json_len(run);
                conn.out()
                    .push_with(&mut core.pool, len, |buf| codec::run::encode_json(run, buf));
                n
            }
            Wire::Json => {
                match frames.json(run) {
                    Some(shared) => conn.out().push_shared(&mut core.pool, shared),
                    None => conn.out().push(&mut core.pool, &frames.body),
                }
                n
            }
            Wire::Link => route_each(core, conn, &mut frames, run),
        };
        if conn.pending() > max_pending {
            core.slow_consumer(conns, turn, key);
            continue;
        }
        if queued > 0 {
            turn.mark_flush(conn);
        }
        delivered += queued;
    }
    s.matches = matches;
    s.run_body = frames.body;
    s.run_link = frames.link;
    core.fanout = Some(s);
    core.stats.delivered += delivered as u64;
    delivered
}

/// The frames of a run, made on first use.
struct Frames {
    /// Every message's JSON `MESSAGE`, back to back (empty until a JSON receiver).
    body: Vec<u8>,
    /// `body` shared by reference, when it is at least [`SHARE_THRESHOLD`].
    shared: Option<Rc<[u8]>>,
    /// Scratch for one `ROUTE` frame.
    link: Vec<u8>,
    /// The sequence number of the run's first message for links (the others follow
    /// it), drawn at the first link.
    first_seq: Option<u64>,
}

impl Frames {
    /// The JSON frames: `Some` shared reference from [`SHARE_THRESHOLD`], else `None`
    /// with the bytes in `self.body`.
    fn json(&mut self, run: &Run<'_>) -> Option<&Rc<[u8]>> {
        if self.body.is_empty() {
            codec::run::encode_json(run, &mut self.body);
            self.shared = (self.body.len() >= SHARE_THRESHOLD).then(|| Rc::from(&self.body[..]));
        }
        self.shared.as_ref()
    }
}

/// Queues each message of `run` to link `conn` as its own `ROUTE` with its own
/// sequence number, skipping those its peer would refuse as too large (counted and
/// logged as in [`fan_out`]); returns how many were queued.
fn route_each(core: &mut Core, conn: &mut Connection, frames: &mut Frames, run: &Run<'_>) -> usize {
    let key = conn.key();
    if !core.fed.may_route(key, None) {
        return 0;
    }
    let first = *frames.first_seq.get_or_insert_with(|| {
        let first = core.fed.next_seq();
        for _ in 1..run.payloads.len() {
            core.fed.next_seq();
        }
        first
    });
    let mut queued = 0;
    for (i, msg) in run.msgs().enumerate() {
        frames.link.clear();
        codec::link::encode_route_frame(&msg, first + i as u64, core.fed.name(), &mut frames.link);
        if !fits_peer(core, key, frames.link.len(), || conn.label()) {
            continue;
        }
        core.fed.count_out(key);
        conn.out().push(&mut core.pool, &frames.link);
        queued += 1;
    }
    queued
}
