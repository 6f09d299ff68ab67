//! Everything a peer broker can send.
//!
//! 1. The input as one line: `parse_link_frame` must not panic, and an accepted `ROUTE`
//!    or `INTEREST` must have a consistent [`Path`] (`iter`, `len`, `origin`, `last`,
//!    `contains` agree; every name is valid; 1..=MAX_HOPS names) that survives being
//!    encoded again and re-parsed, as a broker forwarding it does.
//! 2. Unless the input starts like a frame (`{` or whitespace), the rest of it as a
//!    sequence of link events driving a [`Federation`] the way the reactor does (frames
//!    are encoded, parsed and checked as on a real link). Checked against a model:
//!    refusals are exactly the documented ones; the router subscriptions the effects ask
//!    for match what each link asked for; what is announced on each link is exactly the
//!    interest that link's peer should hear of (own subscriptions, and other links'
//!    entries whose path does not hold the peer), never with a path that holds the peer;
//!    a routed message is delivered once; and when every link is down nothing remains.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pubsub::codec::link::encode_effect;
use pubsub::federation::{Effect, Federation, PathRefused, RouteVerdict};
use pubsub::ids::ConnKey as ConnId;
use pubsub::protocol::{
    encode_interest, encode_no_interest, encode_route, encode_route_head, parse_link_frame,
    validate_name, validate_pattern, validate_publish, write_json_str, Command, ErrorCode, Path,
    RoutePayload, MAX_HOPS,
};

fuzz_target!(|data: &[u8]| {
    frame(data);
    if let Some((&first, rest)) = data.split_first() {
        if !matches!(first, b'{' | b' ' | b'\t' | b'\r' | b'\n') {
            if let Ok(events) = Vec::<Event>::arbitrary_take_rest(Unstructured::new(rest)) {
                federation(&events);
            }
        }
    }
});

// ---------------------------------------------------------------------------------
// 1. One line from a peer.

fn frame(line: &[u8]) {
    let Ok(f) = parse_link_frame(line) else {
        return;
    };
    match f.command {
        Command::Route {
            channel,
            seq,
            path,
            payload,
        } => {
            let names = check_path(path);
            // Forwarded by broker "fwd": the same fields, "fwd" appended to the path.
            let mut out = Vec::new();
            match &payload {
                RoutePayload::Json(message) => {
                    encode_route(&mut out, &channel, seq, Some(path), "fwd", message.get())
                }
                RoutePayload::Base64(data) => {
                    encode_route_head(&mut out, &channel, seq, Some(path), "fwd");
                    out.extend_from_slice(b",\"data\":");
                    write_json_str(&mut out, data);
                    out.extend_from_slice(b"}\n");
                }
            }
            let again = parse_link_frame(out.strip_suffix(b"\n").expect("newline"));
            if names.len() == MAX_HOPS {
                // One hop too many: the next broker refuses it.
                let e = again.expect_err("a path of MAX_HOPS + 1 names was accepted");
                assert_eq!(e.code, ErrorCode::BadField);
                return;
            }
            match again.expect("forwarded ROUTE refused").command {
                Command::Route {
                    channel: c2,
                    seq: s2,
                    path: p2,
                    payload: m2,
                } => {
                    assert_eq!(c2, channel);
                    assert_eq!(s2, seq);
                    assert_eq!(m2, payload, "payload not forwarded byte for byte");
                    let mut want = names.clone();
                    want.push("fwd");
                    assert_eq!(p2.iter().collect::<Vec<_>>(), want);
                }
                other => panic!("forwarded ROUTE parsed as {other:?}"),
            }
        }
        Command::Interest { channel, path } => {
            let names = check_path(path);
            let mut out = Vec::new();
            encode_interest(&mut out, &channel, &names);
            match parse_link_frame(out.strip_suffix(b"\n").expect("newline"))
                .expect("re-encoded INTEREST refused")
                .command
            {
                Command::Interest {
                    channel: c2,
                    path: p2,
                } => {
                    assert_eq!(c2, channel);
                    assert_eq!(p2.iter().collect::<Vec<_>>(), names);
                }
                other => panic!("re-encoded INTEREST parsed as {other:?}"),
            }
        }
        Command::NoInterest { channel, origin } => {
            let mut out = Vec::new();
            encode_no_interest(&mut out, &channel, &origin);
            match parse_link_frame(out.strip_suffix(b"\n").expect("newline"))
                .expect("re-encoded NOINTEREST refused")
                .command
            {
                Command::NoInterest {
                    channel: c2,
                    origin: o2,
                } => assert_eq!((c2, o2), (channel, origin)),
                other => panic!("re-encoded NOINTEREST parsed as {other:?}"),
            }
        }
        _ => {}
    }
}

/// The Path API must agree with itself; returns the names.
fn check_path(path: Path<'_>) -> Vec<&str> {
    let names: Vec<&str> = path.iter().collect();
    assert!(
        (1..=MAX_HOPS).contains(&names.len()),
        "{} names",
        names.len()
    );
    assert_eq!(path.len(), names.len());
    assert!(!path.is_empty());
    assert_eq!(path.origin(), names[0]);
    assert_eq!(path.last(), names[names.len() - 1]);
    for n in &names {
        assert!(validate_name(n).is_ok(), "invalid name {n:?} on a path");
        assert!(path.contains(n));
        // A prefix or an extension of a name is another name.
        let longer = format!("{n}x");
        assert_eq!(path.contains(&longer), names.contains(&longer.as_str()));
        let shorter = &n[..n.len() - 1];
        assert_eq!(path.contains(shorter), names.contains(&shorter));
    }
    for probe in ["", "\"", ",", "[", "]", " "] {
        assert!(!path.contains(probe), "path contains {probe:?}");
    }
    names
}

// ---------------------------------------------------------------------------------
// 2. A federation driven by link events.

/// Broker names; this broker is the first.
const NAMES: [&str; 5] = ["b0", "b1", "b2", "b3", "b4"];
const ME: &str = NAMES[0];
const PATTERNS: [&str; 5] = ["a", "a.*", "a.>", ">", "b.c"];
const CHANNELS: [&str; 4] = ["a", "a.b", "b.c", "x"];
const MESSAGES: [&str; 3] = ["1", "\"hi\"", "{\"k\":[1.0,null]}"];

#[derive(Arbitrary, Debug)]
enum Event {
    Up {
        id: u8,
        peer: u8,
        outbound: bool,
        max_frame: u32,
    },
    Down {
        id: u8,
    },
    Interest {
        id: u8,
        pattern: u8,
        path: Vec<u8>,
    },
    NoInterest {
        id: u8,
        pattern: u8,
        origin: u8,
    },
    Route {
        id: u8,
        channel: u8,
        seq: u8,
        path: Vec<u8>,
        message: u8,
    },
    LocalSub {
        pattern: u8,
    },
    LocalUnsub {
        pattern: u8,
    },
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn link_id(i: u8) -> ConnId {
    ConnId::from(u32::from(i % 4) + 10)
}

type Key = (String, String);

/// What the reactor and the peers know, kept by hand.
#[derive(Default)]
struct Model {
    /// Up links: id -> peer.
    peers: BTreeMap<ConnId, String>,
    /// Entries learned per link, with their path.
    learned: BTreeMap<ConnId, BTreeMap<Key, Vec<String>>>,
    /// Entries announced per link (from the frames sent).
    announced: BTreeMap<ConnId, BTreeSet<Key>>,
    /// Router subscriptions the effects made: (link, pattern).
    router: BTreeSet<(ConnId, String)>,
    /// Local subscription counts.
    local: BTreeMap<String, usize>,
    /// Routed messages delivered: (origin, seq, channel, message).
    seen: HashSet<(String, u64, String, String)>,
}

impl Model {
    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match &e {
                Effect::Announce { link: to, .. } | Effect::Withdraw { link: to, .. } => {
                    let peer = self
                        .peers
                        .get(&to)
                        .expect("announcement on a link that is not up");
                    let mut frame = Vec::new();
                    encode_effect(&e, &mut frame);
                    let line = frame.strip_suffix(b"\n").expect("frame without newline");
                    let f = match parse_link_frame(line) {
                        Ok(f) => f,
                        Err(e) => panic!("federation sent a frame its peer refuses: {e:?}"),
                    };
                    match f.command {
                        Command::Interest { channel, path } => {
                            assert_eq!(path.last(), ME, "INTEREST path must end here");
                            assert!(!path.contains(peer), "INTEREST sent back to {peer}");
                            let key = (path.origin().to_string(), channel.to_string());
                            self.announced.entry(*to).or_default().insert(key);
                        }
                        Command::NoInterest { channel, origin } => {
                            let key = (origin.to_string(), channel.to_string());
                            let told = self.announced.entry(*to).or_default().remove(&key);
                            assert!(told, "NOINTEREST for {key:?} never announced to {peer}");
                        }
                        other => panic!("federation sent {other:?}"),
                    }
                }
                Effect::Subscribe(l, p) => {
                    assert!(self.peers.contains_key(l), "Subscribe for a link not up");
                    assert!(self.router.insert((*l, p.to_string())), "double subscribe");
                }
                Effect::Unsubscribe(l, p) => {
                    assert!(self.peers.contains_key(l), "Unsubscribe for a link not up");
                    assert!(
                        self.router.remove(&(*l, p.to_string())),
                        "unknown unsubscribe"
                    );
                }
            }
        }
    }

    /// Whether link `to` should have been told of `key`.
    fn should_announce(&self, to: ConnId, key: &Key) -> bool {
        let peer = &self.peers[&to];
        if key.0 == ME {
            return self.local.get(&key.1).is_some_and(|&n| n > 0);
        }
        if &key.0 == peer {
            return false;
        }
        self.learned
            .iter()
            .filter(|(&id, _)| id != to)
            .filter_map(|(_, l)| l.get(key))
            .any(|path| path.len() < MAX_HOPS && !path.iter().any(|n| n == peer))
    }

    fn check(&self, fed: &Federation) {
        let info = fed.link_info();
        assert_eq!(info.len(), self.peers.len(), "link count");
        assert_eq!(fed.has_links(), !self.peers.is_empty());
        let mut keys: BTreeSet<Key> = self
            .local
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(p, _)| (ME.to_string(), p.clone()))
            .collect();
        for l in self.learned.values() {
            keys.extend(l.keys().cloned());
        }
        for (&id, peer) in &self.peers {
            assert!(fed.is_link(id));
            let li = info.iter().find(|i| &i.peer == peer).expect("link in info");
            let learned = self.learned.get(&id).map_or(0, |l| l.len());
            assert_eq!(li.interest_in, learned, "interest_in of {peer}");
            let announced = self.announced.get(&id).cloned().unwrap_or_default();
            assert_eq!(li.interest_out, announced.len(), "interest_out of {peer}");
            // Router entries: one per pattern the link asked for.
            let want: BTreeSet<&str> = self
                .learned
                .get(&id)
                .into_iter()
                .flat_map(|l| l.keys().map(|k| k.1.as_str()))
                .collect();
            let got: BTreeSet<&str> = self
                .router
                .iter()
                .filter(|(l, _)| *l == id)
                .map(|(_, p)| p.as_str())
                .collect();
            assert_eq!(got, want, "router entries of {peer}");
            let should: BTreeSet<Key> = keys
                .iter()
                .filter(|k| self.should_announce(id, k))
                .cloned()
                .collect();
            assert_eq!(announced, should, "announced to {peer}");
        }
    }
}

/// Builds a path of names from indexes; `None` when empty.
fn path_names(idx: &[u8]) -> Vec<&'static str> {
    idx.iter()
        .take(MAX_HOPS)
        .map(|&i| pick(&NAMES, i))
        .collect()
}

/// What `check_path` must answer for link `id` and `names`.
fn expected_refusal(m: &Model, id: ConnId, names: &[&str]) -> Option<PathRefused> {
    let peer = m.peers.get(&id)?;
    let last = names[names.len() - 1];
    if last != peer {
        return Some(PathRefused::WrongSender {
            last: last.to_string(),
            peer: peer.clone(),
        });
    }
    names.contains(&ME).then_some(PathRefused::Loop)
}

fn federation(events: &[Event]) {
    let mut fed = Federation::new(ME);
    let mut m = Model::default();
    for ev in events.iter().take(64) {
        match ev {
            Event::Up {
                id,
                peer,
                outbound,
                max_frame,
            } => {
                let (id, peer) = (link_id(*id), pick(&NAMES, *peer));
                // The reactor never makes a link of a connection that already is one.
                if m.peers.contains_key(&id) {
                    continue;
                }
                match fed.link_up(id, peer, *outbound, *max_frame as usize) {
                    Ok(effects) => {
                        assert!(peer != ME && !m.peers.values().any(|p| p == peer));
                        m.peers.insert(id, peer.to_string());
                        m.apply(effects);
                    }
                    Err(_) => assert!(peer == ME || m.peers.values().any(|p| p == peer)),
                }
            }
            Event::Down { id } => {
                let id = link_id(*id);
                let effects = fed.link_down(id);
                if m.peers.remove(&id).is_none() {
                    assert!(effects.is_empty());
                }
                // The reactor drops the link's router entries when it closes it.
                m.router.retain(|(l, _)| *l != id);
                m.learned.remove(&id);
                m.announced.remove(&id);
                m.apply(effects);
            }
            Event::Interest { id, pattern, path } => {
                let id = link_id(*id);
                let names = path_names(path);
                if names.is_empty() {
                    continue;
                }
                let mut out = Vec::new();
                encode_interest(&mut out, pick(&PATTERNS, *pattern), &names);
                let f = parse_link_frame(out.strip_suffix(b"\n").unwrap()).expect("INTEREST");
                let Command::Interest { channel, path } = f.command else {
                    panic!("not an INTEREST");
                };
                if validate_pattern(&channel).is_err() {
                    continue;
                }
                let want = match m.peers.contains_key(&id) {
                    false => Some(PathRefused::NotALink),
                    true => expected_refusal(&m, id, &names),
                };
                match fed.on_interest(id, &channel, path) {
                    Ok(effects) => {
                        assert_eq!(want, None, "INTEREST accepted");
                        let key = (names[0].to_string(), channel.to_string());
                        let path: Vec<String> = names.iter().map(|s| s.to_string()).collect();
                        m.learned.entry(id).or_default().insert(key, path);
                        m.apply(effects);
                    }
                    Err(e) => assert_eq!(Some(e), want, "INTEREST refused"),
                }
            }
            Event::NoInterest {
                id,
                pattern,
                origin,
            } => {
                let id = link_id(*id);
                let mut out = Vec::new();
                encode_no_interest(&mut out, pick(&PATTERNS, *pattern), pick(&NAMES, *origin));
                let f = parse_link_frame(out.strip_suffix(b"\n").unwrap()).expect("NOINTEREST");
                let Command::NoInterest { channel, origin } = f.command else {
                    panic!("not a NOINTEREST");
                };
                let effects = fed.on_no_interest(id, &channel, &origin);
                if let Some(l) = m.learned.get_mut(&id) {
                    l.remove(&(origin.to_string(), channel.to_string()));
                }
                m.apply(effects);
            }
            Event::Route {
                id,
                channel,
                seq,
                path,
                message,
            } => {
                let id = link_id(*id);
                let names = path_names(path);
                let Some((&last, before)) = names.split_last() else {
                    continue;
                };
                let prefix = format!(
                    "[{}]",
                    before
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let mut out = Vec::new();
                let (channel, message) = (pick(&CHANNELS, *channel), pick(&MESSAGES, *message));
                let seq = u64::from(*seq % 8);
                encode_route(&mut out, channel, seq, Path::parse(&prefix), last, message);
                let f = parse_link_frame(out.strip_suffix(b"\n").unwrap()).expect("ROUTE");
                let Command::Route {
                    channel,
                    seq,
                    path,
                    payload: RoutePayload::Json(message),
                } = f.command
                else {
                    panic!("not a JSON ROUTE");
                };
                assert_eq!(path.iter().collect::<Vec<_>>(), names);
                if validate_publish(&channel).is_err() {
                    continue;
                }
                let refused = match m.peers.contains_key(&id) {
                    false => Some(PathRefused::NotALink),
                    true => expected_refusal(&m, id, &names),
                };
                let want = match refused {
                    Some(e) => RouteVerdict::Refused(e),
                    None => {
                        let k = (
                            names[0].to_string(),
                            seq,
                            channel.to_string(),
                            message.get().to_string(),
                        );
                        if m.seen.insert(k) {
                            RouteVerdict::Deliver
                        } else {
                            RouteVerdict::Duplicate
                        }
                    }
                };
                let bytes = message.get().as_bytes();
                assert_eq!(fed.accept_route(id, &channel, seq, path, bytes), want);
                // The same message again (over a second path) is never delivered twice.
                let again = fed.accept_route(id, &channel, seq, path, bytes);
                match want {
                    RouteVerdict::Refused(_) => assert_eq!(again, want),
                    _ => assert_eq!(again, RouteVerdict::Duplicate),
                }
            }
            Event::LocalSub { pattern } => {
                let p = pick(&PATTERNS, *pattern);
                *m.local.entry(p.to_string()).or_default() += 1;
                let effects = fed.local_subscribed(p);
                m.apply(effects);
            }
            Event::LocalUnsub { pattern } => {
                let p = pick(&PATTERNS, *pattern);
                // The reactor reports only subscriptions that exist.
                let Some(n) = m.local.get_mut(p).filter(|n| **n > 0) else {
                    continue;
                };
                *n -= 1;
                let effects = fed.local_unsubscribed(p);
                m.apply(effects);
            }
        }
        m.check(&fed);
    }

    // Every link goes down: nothing learned or announced may remain.
    let ids: Vec<ConnId> = m.peers.keys().copied().collect();
    for id in ids {
        let effects = fed.link_down(id);
        m.peers.remove(&id);
        m.router.retain(|(l, _)| *l != id);
        m.learned.remove(&id);
        m.announced.remove(&id);
        m.apply(effects);
        m.check(&fed);
    }
    assert!(fed.link_info().is_empty(), "links left after all went down");
    assert!(!fed.has_links());
    assert!(m.router.is_empty(), "router entries left: {:?}", m.router);

    // A new link hears of this broker's own subscriptions, and of nothing else.
    let id = ConnId::from(99);
    let effects = fed.link_up(id, "b1", true, 1 << 20).expect("fresh link");
    m.peers.insert(id, "b1".to_string());
    let mut want: Vec<Vec<u8>> = m
        .local
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(p, _)| {
            let mut out = Vec::new();
            encode_interest(&mut out, p, &[ME]);
            out
        })
        .collect();
    let mut got: Vec<Vec<u8>> = effects
        .iter()
        .map(|e| match e {
            Effect::Announce { link, .. } if *link == id => {
                let mut f = Vec::new();
                encode_effect(e, &mut f);
                f
            }
            other => panic!("fresh link got {other:?}"),
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "fresh link heard of stale interest");
    m.apply(effects);
    m.check(&fed);
    let effects = fed.link_down(id);
    assert!(effects.is_empty());
    assert!(fed.link_info().is_empty());
}
