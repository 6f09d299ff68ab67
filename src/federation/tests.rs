//! Interest propagation simulated between in-memory brokers: frames are encoded,
//! parsed and applied exactly as the reactor would, with links as ConnIds.

use std::collections::{BTreeSet, VecDeque};

use super::*;
use crate::protocol::{encode_interest, encode_no_interest, parse_link_frame, Command, Path};

/// A network of brokers joined by links. Link ids are global: link `l` connects
/// `ends[l].0` (ConnId l at that broker) with `ends[l].1` (ConnId l at the other).
struct Net {
    fed: Vec<Federation>,
    /// Router subscriptions of each broker: (link id, pattern).
    subs: Vec<BTreeSet<(ConnId, String)>>,
    ends: Vec<(usize, usize)>,
    queue: VecDeque<(usize, ConnId, Vec<u8>)>,
}

impl Net {
    fn new(n: usize) -> Net {
        Net {
            fed: (0..n).map(|i| Federation::new(&format!("b{i}"))).collect(),
            subs: vec![BTreeSet::new(); n],
            ends: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    fn other(&self, link: ConnId, at: usize) -> usize {
        let (a, b) = self.ends[link.slot()];
        if a == at {
            b
        } else {
            a
        }
    }

    fn apply(&mut self, at: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Announce {
                    link,
                    pattern,
                    path,
                } => {
                    let mut frame = Vec::new();
                    encode_interest(&mut frame, &pattern, &path);
                    let to = self.other(link, at);
                    self.queue.push_back((to, link, frame));
                }
                Effect::Withdraw {
                    link,
                    pattern,
                    origin,
                } => {
                    let mut frame = Vec::new();
                    encode_no_interest(&mut frame, &pattern, &origin);
                    let to = self.other(link, at);
                    self.queue.push_back((to, link, frame));
                }
                Effect::Subscribe(link, p) => {
                    assert!(
                        self.subs[at].insert((link, p.to_string())),
                        "double subscribe"
                    );
                }
                Effect::Unsubscribe(link, p) => {
                    assert!(
                        self.subs[at].remove(&(link, p.to_string())),
                        "unknown unsubscribe"
                    );
                }
            }
        }
    }

    fn link(&mut self, a: usize, b: usize) -> ConnId {
        let id = ConnId::from(self.ends.len() as u32);
        self.ends.push((a, b));
        let name_a = self.fed[a].name().to_string();
        let name_b = self.fed[b].name().to_string();
        let e = self.fed[a]
            .link_up(id, &name_b, true, 1 << 20)
            .expect("link up");
        self.apply(a, e);
        let e = self.fed[b]
            .link_up(id, &name_a, false, 1 << 20)
            .expect("link up");
        self.apply(b, e);
        id
    }

    fn unlink(&mut self, id: ConnId) {
        let (a, b) = self.ends[id.slot()];
        for at in [a, b] {
            self.subs[at].retain(|(l, _)| *l != id);
            let e = self.fed[at].link_down(id);
            self.apply(at, e);
        }
        self.queue.retain(|(_, l, _)| *l != id);
    }

    /// Delivers frames until quiet; returns how many were delivered.
    fn settle(&mut self) -> usize {
        let mut n = 0;
        while let Some((at, link, frame)) = self.queue.pop_front() {
            n += 1;
            assert!(n < 10_000, "interest frames do not converge");
            let line = &frame[..frame.len() - 1];
            let parsed = parse_link_frame(line).expect("valid link frame");
            let effects = match parsed.command {
                Command::Interest { channel, path } => self.fed[at]
                    .on_interest(link, &channel, path)
                    .expect("a path ending at the sender"),
                Command::NoInterest { channel, origin } => {
                    self.fed[at].on_no_interest(link, &channel, &origin)
                }
                other => panic!("unexpected {other:?}"),
            };
            self.apply(at, effects);
        }
        n
    }

    fn sub(&mut self, at: usize, p: &str) {
        let e = self.fed[at].local_subscribed(p);
        self.apply(at, e);
    }

    fn unsub(&mut self, at: usize, p: &str) {
        let e = self.fed[at].local_unsubscribed(p);
        self.apply(at, e);
    }

    /// Patterns broker `at` would forward on each link.
    fn wants(&self, at: usize) -> Vec<(ConnId, String)> {
        self.subs[at].iter().cloned().collect()
    }
}

#[test]
fn tree_propagates_and_withdraws() {
    // b0 hub; b1, b2 leaves; b3 below b1.
    let mut net = Net::new(4);
    let l01 = net.link(1, 0);
    let l02 = net.link(2, 0);
    let l13 = net.link(3, 1);
    net.sub(3, "a.*");
    net.settle();
    assert_eq!(net.wants(1), vec![(l13, "a.*".to_string())]);
    assert_eq!(net.wants(0), vec![(l01, "a.*".to_string())]);
    assert_eq!(net.wants(2), vec![(l02, "a.*".to_string())]);
    // A second local subscriber changes nothing on the wire.
    net.sub(3, "a.*");
    assert_eq!(net.settle(), 0);
    net.unsub(3, "a.*");
    assert_eq!(net.settle(), 0);
    net.unsub(3, "a.*");
    net.settle();
    for b in 0..4 {
        assert!(net.wants(b).is_empty(), "broker {b} still forwards");
    }
}

#[test]
fn late_link_learns_existing_interest() {
    let mut net = Net::new(3);
    net.link(1, 0);
    net.sub(1, "x");
    net.sub(0, "y");
    net.settle();
    let l20 = net.link(2, 0);
    net.settle();
    let mut got = net.wants(2);
    got.sort();
    assert_eq!(got, vec![(l20, "x".to_string()), (l20, "y".to_string())]);
}

#[test]
fn cycle_converges_and_withdraws_completely() {
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    net.link(2, 0);
    net.sub(0, "p");
    net.settle();
    assert!(net.wants(0).is_empty(), "nobody else wants p");
    assert!(!net.wants(1).is_empty() && !net.wants(2).is_empty());
    net.unsub(0, "p");
    net.settle();
    for b in 0..3 {
        assert!(net.wants(b).is_empty(), "broker {b} kept phantom interest");
    }
}

#[test]
fn broken_path_falls_back_to_the_other_one() {
    // Square b0-b1-b2-b3-b0; b2 subscribes; then b1-b2 breaks.
    let mut net = Net::new(4);
    let l01 = net.link(0, 1);
    let l12 = net.link(1, 2);
    net.link(2, 3);
    let l30 = net.link(3, 0);
    net.sub(2, "q");
    net.settle();
    assert!(net.wants(0).contains(&(l01, "q".to_string())));
    net.unlink(l12);
    net.settle();
    // b0 still reaches b2 through b3; b1 through b0.
    assert!(net.wants(0).contains(&(l30, "q".to_string())));
    assert!(net.wants(1).contains(&(l01, "q".to_string())));
    net.unsub(2, "q");
    net.settle();
    for b in 0..4 {
        assert!(net.wants(b).is_empty(), "broker {b} kept phantom interest");
    }
}

#[test]
fn refuses_itself_and_duplicates() {
    let mut f = Federation::new("hub");
    assert_eq!(
        f.link_up(1.into(), "hub", false, 1 << 20),
        Err(LinkRefused::Itself("hub".into()))
    );
    assert!(f.link_up(2.into(), "leaf", false, 1 << 20).is_ok());
    assert_eq!(
        f.link_up(3.into(), "leaf", false, 1 << 20),
        Err(LinkRefused::Duplicate("leaf".into()))
    );
    f.link_down(2.into());
    assert!(f.link_up(3.into(), "leaf", false, 1 << 20).is_ok());
}

#[test]
fn duplicates_are_the_same_message_twice() {
    let mut f = Federation::new("me");
    f.link_up(1.into(), "a", false, 1 << 20).expect("up");
    f.link_up(2.into(), "b", false, 1 << 20).expect("up");
    let via_a = Path::parse(r#"["o","a"]"#).expect("path");
    let via_b = Path::parse(r#"["o","b"]"#).expect("path");
    assert_eq!(
        f.accept_route(1.into(), "x", 5, via_a, b"1"),
        RouteVerdict::Deliver
    );
    assert_eq!(
        f.accept_route(2.into(), "x", 5, via_b, b"1"),
        RouteVerdict::Duplicate
    );
    // A lower number from the same origin is another message (a restarted origin).
    assert_eq!(
        f.accept_route(1.into(), "x", 4, via_a, b"1"),
        RouteVerdict::Deliver
    );
    assert_eq!(f.duplicates(), 1);
}

#[test]
fn a_link_speaks_only_for_paths_ending_at_its_peer() {
    let mut f = Federation::new("hub");
    f.link_up(1.into(), "mallory", false, 1 << 20).expect("up");
    let forged = Path::parse(r#"["leaf-a"]"#).expect("path");
    assert!(matches!(
        f.accept_route(1.into(), "x", u64::MAX, forged, b"1"),
        RouteVerdict::Refused(PathRefused::WrongSender { .. })
    ));
    assert!(f.on_interest(1.into(), "x", forged).is_err());
    let looped = Path::parse(r#"["hub","mallory"]"#).expect("path");
    assert_eq!(
        f.accept_route(1.into(), "x", 1, looped, b"1"),
        RouteVerdict::Refused(PathRefused::Loop)
    );
    assert_eq!(
        f.accept_route(9.into(), "x", 1, forged, b"1"),
        RouteVerdict::Refused(PathRefused::NotALink)
    );
    assert_eq!(f.link_info()[0].stats.refused_in, 3);
}

#[test]
fn a_forged_far_ahead_sequence_does_not_silence_the_origin() {
    let mut f = Federation::new("hub");
    f.link_up(1.into(), "mallory", false, 1 << 20).expect("up");
    f.link_up(2.into(), "leaf-a", false, 1 << 20).expect("up");
    let forged = Path::parse(r#"["leaf-a","mallory"]"#).expect("path");
    assert_eq!(
        f.accept_route(1.into(), "poison", u64::MAX, forged, b"\"forged\""),
        RouteVerdict::Deliver
    );
    let real = Path::parse(r#"["leaf-a"]"#).expect("path");
    for seq in 1..100 {
        assert_eq!(
            f.accept_route(2.into(), "news", seq, real, b"1"),
            RouteVerdict::Deliver
        );
    }
}

/// Found by `fuzz/` target `link_frames`: an `INTEREST` whose path already holds
/// `MAX_HOPS` names is accepted and announced on the other links with this broker
/// appended: `MAX_HOPS + 1` names, a frame every peer refuses (`bad_field`, logged and
/// ignored), while this broker records it as announced. Open: the path should stop
/// here (not learned, or learned but never announced further). The same holds for a
/// `ROUTE` forwarded at `MAX_HOPS`.
#[test]
fn fuzz_interest_at_max_hops_is_not_forwarded() {
    let mut fed = Federation::new("b0");
    fed.link_up(10.into(), "b1", false, 1 << 20).expect("b1");
    fed.link_up(11.into(), "b2", false, 1 << 20).expect("b2");
    let mut names = vec!["\"b3\""; crate::protocol::MAX_HOPS - 1];
    names.push("\"b1\"");
    let text = format!("[{}]", names.join(","));
    let path = Path::parse(&text).expect("MAX_HOPS names is a valid path");
    for e in fed.on_interest(10.into(), "a", path).expect("accepted") {
        if let Effect::Announce { link, path, .. } = e {
            assert!(
                path.len() <= crate::protocol::MAX_HOPS,
                "announced to {link:?} a path of {} names, which every peer refuses",
                path.len()
            );
        }
    }
    // A routed message at the limit is not forwarded either.
    assert!(!fed.may_route(11.into(), Some(path)));
}

/// The per-link facts the router and STATS read (each mutant of these survived the
/// library tests, caught only by process-level tests if at all): links up, routing
/// rules, sequence numbers, frame limits and every counter.
#[test]
fn links_routing_rules_and_counters() {
    let mut f = Federation::new("hub");
    assert_eq!(f.name(), "hub");
    assert!(!f.has_links() && !f.is_link(1.into()));
    assert!(!f.may_route(1.into(), None), "not a link");
    assert_eq!(f.peer_frame_limit(1.into()), None);
    assert_eq!(f.count_too_large(1.into()), 0);
    f.link_up(1.into(), "leaf", false, 5000).expect("up");
    assert!(f.has_links() && f.is_link(1.into()) && !f.is_link(2.into()));
    assert_eq!(
        f.peer_frame_limit(1.into()),
        Some(5000 + crate::protocol::LINK_ENVELOPE)
    );

    // Published here: may go; routed: not back to a broker on its path, and not past
    // MAX_HOPS names; a path with room and without the peer: may go.
    assert!(f.may_route(1.into(), None));
    let via_leaf = Path::parse(r#"["o","leaf"]"#).expect("path");
    assert!(!f.may_route(1.into(), Some(via_leaf)));
    let elsewhere = Path::parse(r#"["o","x"]"#).expect("path");
    assert!(f.may_route(1.into(), Some(elsewhere)));
    let names = vec!["\"n\""; crate::protocol::MAX_HOPS - 1];
    let text = format!("[{}]", names.join(","));
    let short = Path::parse(&text).expect("path");
    assert!(f.may_route(1.into(), Some(short)), "room for one more name");

    // Sequence numbers go up by one.
    let a = f.next_seq();
    let b = f.next_seq();
    assert!(a > 1, "starts at boot time, not at zero");
    assert_eq!(b, a + 1);

    // Counters.
    f.count_out(1.into());
    f.count_out(1.into());
    f.count_slow(1.into());
    assert_eq!(f.count_too_large(1.into()), 1);
    assert_eq!(f.count_too_large(1.into()), 2);
    let from = Path::parse(r#"["leaf"]"#).expect("path");
    f.accept_route(1.into(), "c", 7, from, b"1");
    f.accept_route(1.into(), "c", 8, from, b"1");
    let stats = f.link_info()[0].stats;
    assert_eq!(
        (
            stats.routes_out,
            stats.slow_consumer,
            stats.too_large,
            stats.routes_in
        ),
        (2, 1, 2, 2)
    );
    assert_eq!(f.duplicates(), 0);
}

/// Only the first local subscription to a pattern is announced, and only when a link
/// is up.
#[test]
fn only_the_first_local_subscription_is_announced() {
    let mut f = Federation::new("hub");
    assert!(
        f.local_subscribed("a").is_empty(),
        "no link: nothing to say"
    );
    f.link_up(1.into(), "leaf", false, 1 << 20).expect("up");
    let announced = |e: &[Effect]| {
        e.iter()
            .filter(|e| matches!(e, Effect::Announce { .. }))
            .count()
    };
    assert_eq!(announced(&f.local_subscribed("b")), 1);
    assert_eq!(announced(&f.local_subscribed("b")), 0, "second subscriber");
}

/// Interest frames are counted both ways, and a message seen a thousand messages ago is
/// still recognised as a duplicate (the window is far larger than that).
#[test]
fn interest_counters_and_a_long_dedup_window() {
    let mut f = Federation::new("hub");
    f.local_subscribed("mine");
    f.link_up(1.into(), "leaf", false, 1 << 20).expect("up");
    f.link_up(2.into(), "other", false, 1 << 20).expect("up");
    let from_leaf = Path::parse(r#"["leaf"]"#).expect("path");
    f.on_interest(1.into(), "theirs", from_leaf)
        .expect("accepted");
    f.on_interest(1.into(), "theirs.too", from_leaf)
        .expect("accepted");
    f.on_interest(1.into(), "gone", from_leaf)
        .expect("accepted");
    f.on_no_interest(1.into(), "gone", "leaf");
    let info = f.link_info();
    let leaf = info.iter().find(|l| l.peer == "leaf").expect("leaf");
    assert_eq!(leaf.stats.interest_updates_in, 4);
    assert_eq!(leaf.stats.interest_updates_out, 1, "`mine` announced once");
    let other = info.iter().find(|l| l.peer == "other").expect("other");
    assert_eq!(
        other.stats.interest_updates_out, 5,
        "`mine`, the leaf's three, and the withdrawal of `gone`"
    );

    for seq in 1..=1000 {
        assert_eq!(
            f.accept_route(1.into(), "c", seq, from_leaf, b"1"),
            RouteVerdict::Deliver
        );
    }
    assert_eq!(
        f.accept_route(1.into(), "c", 1, from_leaf, b"1"),
        RouteVerdict::Duplicate
    );
}
