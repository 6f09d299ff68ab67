//! The router against a naive model: a list of (connection, pattern) and a matcher
//! written from the protocol's definition, token by token.
//!
//! Random subscribe / unsubscribe / lookup / connection-drop sequences must give the
//! same matches as the model, one per matching (connection, pattern) subscription (how
//! many copies a connection then receives is the codec's rule); the counters must agree with the
//! model at every step; and once everything is removed, both indexes must be empty,
//! trie nodes included.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub::protocol::{validate_pattern, validate_publish};
use pubsub::router::{pattern_matches, Router};

/// A subscriber as this target stores it.
type ConnId = usize;

/// One step of a script; the input is text, one step per line, so that the seed
/// corpus can be the router tests' own sequences:
/// `+C PATTERN` subscribe, `-C PATTERN` unsubscribe, `?CHANNEL` look up, `xC` drop
/// connection C (one character, see [`conn_id`]). Other lines are ignored.
#[derive(Debug)]
enum Op<'a> {
    Subscribe(u8, &'a str),
    Unsubscribe(u8, &'a str),
    Lookup(&'a str),
    Drop(u8),
}

fn script(data: &[u8]) -> Vec<Op<'_>> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (tag, rest) = line.split_at_checked(1)?;
            let conn = rest.bytes().next().unwrap_or(0);
            let name = rest.get(1..).unwrap_or("").trim_start();
            Some(match tag {
                "+" => Op::Subscribe(conn, name),
                "-" => Op::Unsubscribe(conn, name),
                "?" => Op::Lookup(rest),
                "x" => Op::Drop(conn),
                _ => return None,
            })
        })
        .take(256)
        .collect()
}

/// The definition: `*` is exactly one token, a final `>` one or more tokens.
fn naive_matches(pattern: &[&str], channel: &[&str]) -> bool {
    match (pattern.first(), channel.first()) {
        (Some(&">"), Some(_)) if pattern.len() == 1 => true,
        (Some(&"*"), Some(_)) => naive_matches(&pattern[1..], &channel[1..]),
        (Some(p), Some(c)) if p == c => naive_matches(&pattern[1..], &channel[1..]),
        (None, None) => true,
        _ => false,
    }
}

/// A connection per character: `0`-`4` are small slab-like ids, anything else the
/// same large one.
fn conn_id(c: u8) -> ConnId {
    match c.wrapping_sub(b'0') {
        n @ 0..=4 => usize::from(n),
        _ => usize::MAX - 1,
    }
}

struct Model {
    subs: Vec<(ConnId, String, bool)>,
}

impl Model {
    fn check_stats(&self, r: &Router<ConnId>) {
        let stats = r.stats();
        let mut exact: Vec<&str> = self
            .subs
            .iter()
            .filter(|s| !s.2)
            .map(|s| s.1.as_str())
            .collect();
        exact.sort_unstable();
        exact.dedup();
        assert_eq!(stats.exact_channels, exact.len(), "exact_channels");
        let wild = self.subs.iter().filter(|s| s.2).count();
        assert_eq!(stats.wildcard_subscriptions, wild, "wildcard_subscriptions");
    }
}

fuzz_target!(|data: &[u8]| {
    let ops = script(data);
    let mut r: Router<ConnId> = Router::new();
    let mut m = Model { subs: Vec::new() };
    let mut out = Vec::new();
    let mut lookups = 0u64;
    let mut matches = 0u64;
    for op in &ops {
        match op {
            Op::Subscribe(conn, p) => {
                let (conn, p) = (conn_id(*conn), p.to_string());
                let Ok(wild) = validate_pattern(&p) else {
                    continue;
                };
                // A connection holds a pattern once; the connection, not the router,
                // keeps it that way (a second SUBSCRIBE is answered without inserting).
                if m.subs.iter().any(|s| s.0 == conn && s.1 == p) {
                    continue;
                }
                r.insert(&p, wild, conn);
                m.subs.push((conn, p, wild));
            }
            Op::Unsubscribe(conn, p) => {
                let (conn, p) = (conn_id(*conn), p.to_string());
                let Ok(wild) = validate_pattern(&p) else {
                    continue;
                };
                let had = m.subs.iter().position(|s| s.0 == conn && s.1 == p);
                if let Some(i) = had {
                    m.subs.remove(i);
                }
                assert_eq!(r.remove(&p, wild, conn), had.is_some(), "remove {p} {conn}");
            }
            Op::Lookup(c) => {
                let c = c.to_string();
                if validate_publish(&c).is_err() {
                    continue;
                }
                let ctoks: Vec<&str> = c.split('.').collect();
                let mut want: Vec<ConnId> = m
                    .subs
                    .iter()
                    .filter(|s| {
                        let ptoks: Vec<&str> = s.1.split('.').collect();
                        let naive = naive_matches(&ptoks, &ctoks);
                        assert_eq!(naive, pattern_matches(&s.1, &c), "{} vs {c}", s.1);
                        naive
                    })
                    .map(|s| s.0)
                    .collect();
                want.sort_unstable();
                out.clear();
                // Something already in `out` must be left alone.
                out.push(usize::MAX);
                let may_repeat = r.lookup(&c, &mut out);
                assert_eq!(out[0], usize::MAX, "lookup overwrote the caller's entries");
                let mut got = out[1..].to_vec();
                got.sort_unstable();
                assert_eq!(got, want, "matches of {c}");
                if !may_repeat {
                    let mut distinct = got.clone();
                    distinct.dedup();
                    assert_eq!(distinct, got, "lookup said no subscriber repeats: {c}");
                }
                lookups += 1;
                matches += want.len() as u64;
            }
            Op::Drop(conn) => {
                let conn = conn_id(*conn);
                for (c, p, wild) in m.subs.iter().filter(|s| s.0 == conn) {
                    assert!(r.remove(p, *wild, *c), "drop: {p} of {c} missing");
                }
                m.subs.retain(|s| s.0 != conn);
            }
        }
        m.check_stats(&r);
    }
    let stats = r.stats();
    assert_eq!((stats.lookups, stats.matches), (lookups, matches));
    // Remove everything: the indexes must be pruned to nothing.
    for (c, p, wild) in m.subs.drain(..) {
        assert!(r.remove(&p, wild, c), "final: {p} of {c} missing");
    }
    m.check_stats(&r);
    let stats = r.stats();
    assert_eq!(stats.inserts, stats.removes);
    assert!(r.is_pruned(), "indexes not empty after removing everything");
});
