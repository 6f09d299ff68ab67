//! Delivering a run of publishes at once: consecutive messages from one client to one
//! channel, read in one go.
//!
//! Owns [`fan_out_run`]: one router lookup for the whole run, then, per receiver, the
//! run's frames pushed as one piece (encoded straight into the queue of a single
//! receiver, copied below [`SHARE_THRESHOLD`] or shared by reference above it) instead
//! of one lookup and one push per message. Each queue receives the same bytes in the
//! same order as message-by-message fan-out would give it. Receivers that need
//! something per message (a federation link: a sequence number, a size check against
//! its peer) make the whole run go message by message through [`fan_out`]. It never
//! allocates per delivery and never writes to a socket.

use std::rc::Rc;

use super::fanout::SHARE_THRESHOLD;
use super::{fan_out, Core, Msg, Origin, Payload, Turn};
use crate::codec::{self, Delivery, Wire};
use crate::connection::{Conns, CHUNK_SIZE};
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
    let mut s = core.fanout.take().unwrap_or_default();
    s.matches.clear();
    let may_repeat = core.router.lookup(run.channel, &mut s.matches);
    let matches = std::mem::take(&mut s.matches);
    // A link needs a sequence number and a size check per message: go one by one.
    let per_message = matches
        .iter()
        .any(|sub| conns.get(sub.conn).is_some_and(|c| c.wire() != Wire::Json));
    if per_message {
        s.matches = matches;
        core.fanout = Some(s);
        return run.msgs().map(|m| fan_out(core, conns, turn, &m)).sum();
    }
    core.stats.published += n as u64;
    s.publish_no += 1;
    let max_pending = core.settings.max_pending;
    let single = matches.len() == 1;
    let len = codec::run::json_len(run);
    let mut body = std::mem::take(&mut s.run_body);
    body.clear();
    let mut shared: Option<Rc<[u8]>> = None;
    let mut receivers = 0;
    for sub in &matches {
        let key = sub.conn;
        let Some(conn) = conns.get_mut(key) else {
            continue;
        };
        if !conn.receives() || (key == run.from && !conn.echo()) {
            continue;
        }
        if may_repeat
            && Wire::Json.delivery() == Delivery::PerConnection
            && !conn.first_delivery_of(s.publish_no)
        {
            continue;
        }
        if single && len <= RUN_MAX_BYTES {
            conn.out()
                .push_with(&mut core.pool, len, |buf| codec::run::encode_json(run, buf));
        } else {
            if body.is_empty() {
                codec::run::encode_json(run, &mut body);
                shared = (body.len() >= SHARE_THRESHOLD).then(|| Rc::from(&body[..]));
            }
            match &shared {
                Some(frames) => conn.out().push_shared(&mut core.pool, frames),
                None => conn.out().push(&mut core.pool, &body),
            }
        }
        if conn.pending() > max_pending {
            core.slow_consumer(conns, turn, key);
            continue;
        }
        turn.mark_flush(conn);
        receivers += 1;
    }
    s.matches = matches;
    s.run_body = body;
    core.fanout = Some(s);
    let delivered = receivers * n;
    core.stats.delivered += delivered as u64;
    delivered
}
