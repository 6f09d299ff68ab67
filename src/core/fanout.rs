//! Delivering one message to every matching subscription: the hot path.
//!
//! Owns [`fan_out`]: router lookup, the per-receiver checks (still open, echo, a link
//! whose peer has not seen the message, the delivering codec's rule of one copy per
//! connection or per subscription), and pushing the frame into each write queue. Each
//! codec present among the receivers encodes its frame once per publish; every
//! receiver of that codec shares it (copied into pooled chunks below
//! [`SHARE_THRESHOLD`], shared by reference above). When a publish has a single
//! receiver, a small JSON frame whose length is known beforehand is encoded straight
//! into its write queue instead (no copy); when that receiver is a channel's only
//! subscriber and the broker holds no wildcard subscription, without touching the
//! scratch or the match list either (`deliver_single`), and anything unusual falls
//! back to the general loop (`deliver_all`). It is a free function over the real
//! state, so the benchmark measures exactly what the broker runs. It never allocates
//! per delivery and never writes to a socket.

use std::rc::Rc;

use super::{Core, Turn};
use crate::codec::{self, Delivery, Wire};
use crate::connection::{ChunkPool, Connection, Conns};
use crate::ids::ConnKey;
use crate::protocol::Path;
use crate::router::SubRef;

/// Frames at least this large are shared between queues by reference instead of
/// copied into each. Measured (fan-out 1 -> 1000): at 1 KiB our copy into the queues
/// was a quarter of the broker's time while the kernel copies the bytes again anyway;
/// below ~1 KiB copying is cheaper than a refcount and an iovec per frame.
pub const SHARE_THRESHOLD: usize = 1024;

/// A message's payload: bytes, and whether they are JSON text (protocol v1 publishes
/// JSON values; byte-oriented protocols publish bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The payload.
    pub bytes: &'a [u8],
    /// Whether `bytes` is one valid JSON value, to be spliced into JSON frames as is.
    pub json: bool,
}

impl<'a> Payload<'a> {
    /// JSON text, as a protocol-v1 client published it.
    pub fn json(text: &'a str) -> Payload<'a> {
        Payload {
            bytes: text.as_bytes(),
            json: true,
        }
    }
}

/// Where a message comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// Published by a client of this broker.
    Client(ConnKey),
    /// Routed in over a federation link: the origin's sequence number and the path.
    Routed {
        /// The origin broker's number for the message.
        seq: u64,
        /// Brokers crossed, origin first.
        path: Path<'a>,
    },
}

/// One message to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// The channel it was published on (validated).
    pub channel: &'a str,
    /// `channel` is plain ([`crate::protocol::is_plain`]), so it needs no escaping in a
    /// JSON string; `false` when unknown.
    pub plain: bool,
    /// The payload.
    pub payload: Payload<'a>,
    /// Where it comes from.
    pub origin: Origin<'a>,
}

/// One codec's frame for the current publish.
#[derive(Default)]
struct Body {
    bytes: Vec<u8>,
    shared: Option<Rc<[u8]>>,
    encoded: bool,
}

/// Fan-out scratch kept between publishes (never frames: those live one publish).
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) matches: Vec<SubRef>,
    /// Numbers publishes for per-connection deduplication (shared with runs).
    pub(super) publish_no: u64,
    /// The frames of a run ([`super::run`]), kept for their allocation.
    pub(super) run_body: Vec<u8>,
    /// A run's `ROUTE` frame for a link, likewise.
    pub(super) run_link: Vec<u8>,
    bodies: [Body; Wire::COUNT],
    /// Sequence number given to the current publish for links (0: none yet).
    seq: u64,
}

impl Scratch {
    /// The frame `wire` delivers for `msg`, encoded on first use in this publish.
    #[inline]
    fn body(&mut self, wire: Wire, core: &mut Core, msg: &Msg<'_>) -> &Body {
        let body = &mut self.bodies[wire.index()];
        if !body.encoded {
            encode(body, &mut self.seq, wire, core, msg);
        }
        body
    }

    /// The only receiver of this publish, when it takes JSON and the frame is small
    /// and its length known: encodes the frame straight into `conn`'s queue (no scratch
    /// copy) and returns `true`; otherwise returns `false` having done nothing.
    #[inline(always)]
    fn direct_json(conn: &mut Connection, pool: &mut ChunkPool, msg: &Msg<'_>) -> bool {
        let Some(len) = codec::json::delivery_len(msg).filter(|&len| len < SHARE_THRESHOLD) else {
            return false;
        };
        conn.out()
            .push_with(pool, len, |buf| codec::json::encode_delivery(msg, buf));
        true
    }

    fn reset(&mut self) {
        for body in &mut self.bodies {
            if body.encoded {
                body.encoded = false;
                body.shared = None;
            }
        }
        self.seq = 0;
    }
}

/// Encodes `wire`'s frame for `msg` into `body` (once per publish); a link frame takes
/// the publish's sequence number, drawn on first use.
#[cold]
fn encode(body: &mut Body, seq: &mut u64, wire: Wire, core: &mut Core, msg: &Msg<'_>) {
    body.encoded = true;
    body.bytes.clear();
    match wire {
        Wire::Json => codec::json::encode_delivery(msg, &mut body.bytes),
        Wire::Link => {
            if *seq == 0 {
                *seq = match msg.origin {
                    Origin::Routed { seq, .. } => seq,
                    Origin::Client(_) => core.fed.next_seq(),
                };
            }
            codec::link::encode_route_frame(msg, *seq, core.fed.name(), &mut body.bytes);
        }
    }
    body.shared = (body.bytes.len() >= SHARE_THRESHOLD).then(|| Rc::from(&body.bytes[..]));
}

/// Queues `msg` to every matching subscription (see the module documentation).
/// Returns how many connections it was queued to (a link counts as one).
pub fn fan_out(core: &mut Core, conns: &mut Conns, turn: &mut Turn, msg: &Msg<'_>) -> usize {
    // `from` is a key no receiver has when the message came over a link.
    let (from, path) = match msg.origin {
        Origin::Client(key) => {
            core.stats.published += 1;
            (key, None)
        }
        Origin::Routed { path, .. } => (ConnKey::NONE, Some(path)),
    };
    let receivers = match core.router.lookup_exact(msg.channel) {
        Some(&[sub]) => match deliver_single(core, conns, turn, msg, from, sub.conn) {
            Some(receivers) => receivers,
            None => {
                let mut s = core.fanout.take().unwrap_or_default();
                s.matches.clear();
                s.matches.push(sub);
                deliver_all(core, conns, turn, msg, (from, path), s, false)
            }
        },
        Some([]) => 0,
        Some(subs) => {
            let mut s = core.fanout.take().unwrap_or_default();
            s.matches.clear();
            s.matches.extend_from_slice(subs);
            deliver_all(core, conns, turn, msg, (from, path), s, false)
        }
        None => {
            let mut s = core.fanout.take().unwrap_or_default();
            s.matches.clear();
            // Only a wildcard match can name a connection twice.
            let may_repeat = core.router.lookup(msg.channel, &mut s.matches);
            deliver_all(core, conns, turn, msg, (from, path), s, may_repeat)
        }
    };
    core.stats.delivered += receivers as u64;
    receivers
}

/// The common publish, without the scratch: the channel's only subscriber, no wildcard
/// subscription in the broker, the receiver a JSON client and the frame small and of
/// known length (a plain channel), encoded straight into its queue. Returns how many
/// received it (0 or 1), or `None`, having done nothing, when anything is unusual (a
/// link, another codec, a channel not proved plain, a large frame): the caller then
/// runs [`deliver_all`], which decides the same cases the general way.
#[inline(always)]
fn deliver_single(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    msg: &Msg<'_>,
    from: ConnKey,
    key: ConnKey,
) -> Option<usize> {
    let Some(conn) = conns.get_mut(key) else {
        return Some(0);
    };
    if !conn.receives() || (key == from && !conn.echo()) {
        return Some(0);
    }
    if conn.wire() != Wire::Json
        || conn.is_link()
        || !Scratch::direct_json(conn, &mut core.pool, msg)
    {
        return None;
    }
    if conn.pending() > core.settings.max_pending {
        core.slow_consumer(conns, turn, key);
        return Some(0);
    }
    turn.mark_flush(conn);
    Some(1)
}

/// The general loop over `s.matches` (filled by the caller); `may_repeat` says a
/// connection may appear more than once in them. Gives the scratch back to the core.
#[inline(never)]
fn deliver_all(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    msg: &Msg<'_>,
    (from, path): (ConnKey, Option<Path<'_>>),
    mut s: Box<Scratch>,
    may_repeat: bool,
) -> usize {
    s.publish_no += 1;
    let max_pending = core.settings.max_pending;
    let mut receivers = 0;
    let matches = std::mem::take(&mut s.matches);
    // A single receiver (pairs, fan-in) gets the frame encoded straight into its queue.
    let single = matches.len() == 1;
    for sub in &matches {
        let key = sub.conn;
        let Some(conn) = conns.get_mut(key) else {
            continue;
        };
        if !conn.receives() || (key == from && !conn.echo()) {
            continue;
        }
        let wire = conn.wire();
        if may_repeat
            && wire.delivery() == Delivery::PerConnection
            && !conn.first_delivery_of(s.publish_no)
        {
            continue;
        }
        let link = conn.is_link();
        if link && !core.fed.may_route(key, path) {
            continue;
        }
        let direct =
            single && wire == Wire::Json && Scratch::direct_json(conn, &mut core.pool, msg);
        if !direct {
            let body = s.body(wire, core, msg);
            if link {
                if !fits_peer(core, key, body.bytes.len(), || conn.label()) {
                    continue;
                }
                core.fed.count_out(key);
            }
            match &body.shared {
                Some(frame) => conn.out().push_shared(&mut core.pool, frame),
                None => conn.out().push(&mut core.pool, &body.bytes),
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
    s.reset();
    core.fanout = Some(s);
    receivers
}

/// Whether a link frame of `len` bytes (newline included) fits what link `key`'s
/// peer accepts; if not, counts and (rate-limited) logs it.
#[cold]
fn fits_peer_slow(core: &mut Core, key: ConnKey, len: usize, limit: usize, label: String) {
    let count = core.fed.count_too_large(key);
    if let Some(held) = core.throttles.too_large.allow(std::time::Instant::now()) {
        tracing::warn!(
            link = %label,
            bytes = len - 1,
            limit,
            not_sent_so_far = count,
            held_back = held,
            "a message is larger than the link's peer accepts (its --max-frame is smaller); not sent on that link"
        );
    }
}

#[inline]
pub(super) fn fits_peer(
    core: &mut Core,
    key: ConnKey,
    len: usize,
    label: impl FnOnce() -> String,
) -> bool {
    let limit = core.fed.peer_frame_limit(key).unwrap_or(usize::MAX);
    if len - 1 <= limit {
        return true;
    }
    fits_peer_slow(core, key, len, limit, label());
    false
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    use super::*;
    use crate::connection::{Connection, Stage};
    use crate::core::Settings;
    use crate::net::Transport;

    /// A core with `n` open JSON connections subscribed to `a.b` (the far ends kept).
    fn setup(n: usize) -> (Core, Conns, Turn, Vec<ConnKey>, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut core = Core::new(Settings::defaults("t"));
        let mut conns = Conns::new();
        let mut turn = Turn::new(Instant::now());
        let (mut keys, mut peers) = (Vec::new(), Vec::new());
        for _ in 0..n {
            peers.push(TcpStream::connect(addr).expect("connect"));
            let (stream, peer) = listener.accept().expect("accept");
            stream.set_nonblocking(true).expect("nonblocking");
            let id = core.next_client_id();
            let conn = Connection::new(
                conns.vacant_key(),
                Transport::Tcp(mio::net::TcpStream::from_std(stream)),
                peer,
                id,
                Stage::Open,
                Wire::Json,
            );
            let key = conns.insert(conn);
            core.subscribe(&mut conns, &mut turn, key, "a.b")
                .expect("subscribe");
            keys.push(key);
        }
        (core, conns, turn, keys, peers)
    }

    /// What `key`'s queue holds, drained.
    fn drain(core: &mut Core, conns: &mut Conns, key: ConnKey) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(conn) = conns.get_mut(key) {
            conn.out()
                .write_to(&mut core.pool, &mut out, usize::MAX)
                .expect("write");
        }
        out
    }

    fn msg(channel: &str, plain: bool) -> Msg<'_> {
        Msg {
            channel,
            plain,
            payload: Payload::json("\"hi\""),
            origin: Origin::Client(ConnKey::NONE),
        }
    }

    /// A single receiver gets the frame encoded straight into its queue, several get
    /// copies of the scratch-encoded one: the same bytes either way, publish after
    /// publish, also for a channel not proved plain (always encoded in the scratch).
    #[test]
    fn every_receiver_gets_the_same_frame_whichever_path_encoded_it() {
        let expected = b"{\"command\":\"MESSAGE\",\"channel\":\"a.b\",\"message\":\"hi\"}\n";
        for n in [1, 3] {
            let (mut core, mut conns, mut turn, keys, _peers) = setup(n);
            for plain in [true, true, false] {
                assert_eq!(
                    fan_out(&mut core, &mut conns, &mut turn, &msg("a.b", plain)),
                    n
                );
            }
            for &key in &keys {
                assert_eq!(drain(&mut core, &mut conns, key), expected.repeat(3));
            }
            assert_eq!(core.pool.queued(), 0);
        }
    }

    /// The first receiver turning out a slow consumer has its queue cut: the others
    /// still get the whole frame.
    #[test]
    fn a_slow_first_receiver_does_not_lose_the_frame_for_the_others() {
        let (mut core, mut conns, mut turn, keys, _peers) = setup(3);
        core.settings.max_pending = 100;
        let junk = [b'x'; 80];
        if let Some(conn) = conns.get_mut(keys[0]) {
            conn.out().push(&mut core.pool, &junk);
        }
        assert_eq!(
            fan_out(&mut core, &mut conns, &mut turn, &msg("a.b", true)),
            2
        );
        let expected = b"{\"command\":\"MESSAGE\",\"channel\":\"a.b\",\"message\":\"hi\"}\n";
        for &key in &keys[1..] {
            assert_eq!(drain(&mut core, &mut conns, key), expected);
        }
        let first = drain(&mut core, &mut conns, keys[0]);
        assert!(!first.windows(expected.len()).any(|w| w == expected));
    }

    /// The single-subscriber path gives way to the general one as soon as a wildcard
    /// subscription exists: a wildcard subscriber added later still gets the message,
    /// once, and so does the exact one; a connection holding both gets one copy.
    #[test]
    fn a_wildcard_subscriber_added_later_still_gets_the_message() {
        let (mut core, mut conns, mut turn, keys, _peers) = setup(2);
        core.unsubscribe(&mut conns, &mut turn, keys[1], "a.b")
            .expect("unsubscribe");
        let m = msg("a.b", true);
        assert_eq!(fan_out(&mut core, &mut conns, &mut turn, &m), 1);
        core.subscribe(&mut conns, &mut turn, keys[1], "a.*")
            .expect("subscribe");
        core.subscribe(&mut conns, &mut turn, keys[0], "a.>")
            .expect("subscribe");
        assert_eq!(fan_out(&mut core, &mut conns, &mut turn, &m), 2);
        let expected = b"{\"command\":\"MESSAGE\",\"channel\":\"a.b\",\"message\":\"hi\"}\n";
        let replies0 = drain(&mut core, &mut conns, keys[0]);
        let replies1 = drain(&mut core, &mut conns, keys[1]);
        let count = |out: &[u8]| {
            out.windows(expected.len())
                .filter(|w| w == expected)
                .count()
        };
        assert_eq!(count(&replies0), 2, "one copy per publish");
        assert_eq!(count(&replies1), 1);
        assert_eq!(core.router.stats().matches, 1 + 3);
        assert_eq!(core.stats.delivered, 3);
    }

    /// The only subscriber publishing with `echo` off receives nothing, and a closed
    /// one neither; with `echo` on it receives its own message.
    #[test]
    fn a_single_subscriber_that_published_gets_it_only_with_echo() {
        let (mut core, mut conns, mut turn, keys, _peers) = setup(1);
        let own = Msg {
            origin: Origin::Client(keys[0]),
            ..msg("a.b", true)
        };
        assert_eq!(fan_out(&mut core, &mut conns, &mut turn, &own), 1);
        if let Some(conn) = conns.get_mut(keys[0]) {
            conn.set_echo(false);
        }
        assert_eq!(fan_out(&mut core, &mut conns, &mut turn, &own), 0);
        let expected = b"{\"command\":\"MESSAGE\",\"channel\":\"a.b\",\"message\":\"hi\"}\n";
        assert_eq!(drain(&mut core, &mut conns, keys[0]), expected);
        assert_eq!((core.stats.published, core.stats.delivered), (2, 1));
    }

    /// A single subscriber over its limit is closed as a slow consumer, by either path.
    #[test]
    fn a_single_subscriber_over_its_limit_is_a_slow_consumer() {
        for plain in [true, false] {
            let (mut core, mut conns, mut turn, keys, _peers) = setup(1);
            core.settings.max_pending = 60;
            assert_eq!(
                fan_out(&mut core, &mut conns, &mut turn, &msg("a.b", plain)),
                1
            );
            assert_eq!(
                fan_out(&mut core, &mut conns, &mut turn, &msg("a.b", plain)),
                0
            );
            let conn = conns.get(keys[0]).expect("still in the table");
            assert!(!conn.receives(), "closing");
        }
    }

    /// A link that is a channel's only subscriber gets the link's frame (`ROUTE`), not
    /// the JSON client's `MESSAGE`: the single-subscriber path leaves it to the general
    /// one. A message that came over that link is not sent back on it.
    #[test]
    fn a_single_link_receiver_gets_a_route_frame() {
        let (mut core, mut conns, mut turn, keys, _peers) = setup(1);
        if let Some(conn) = conns.get_mut(keys[0]) {
            conn.set_role(crate::connection::Role::Link { upstream: None });
        }
        core.fed
            .link_up(keys[0], "peer", false, 1 << 20)
            .expect("link up");
        drain(&mut core, &mut conns, keys[0]);
        // The publish takes the next sequence number after this one.
        let seq = core.fed.next_seq() + 1;
        assert_eq!(
            fan_out(&mut core, &mut conns, &mut turn, &msg("a.b", true)),
            1
        );
        let mut expected = Vec::new();
        codec::link::encode_route_frame(&msg("a.b", true), seq, core.fed.name(), &mut expected);
        assert!(expected.starts_with(b"{\"command\":\"ROUTE\""));
        assert_eq!(drain(&mut core, &mut conns, keys[0]), expected);
        let path = crate::protocol::Path::parse(r#"["peer"]"#).expect("path");
        let routed = Msg {
            origin: Origin::Routed { seq: 7, path },
            ..msg("a.b", true)
        };
        assert_eq!(fan_out(&mut core, &mut conns, &mut turn, &routed), 0);
        assert!(drain(&mut core, &mut conns, keys[0]).is_empty());
    }
}
