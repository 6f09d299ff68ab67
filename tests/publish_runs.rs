//! Bursts of publishes read in one go: the broker delivers consecutive publishes to
//! one channel together (`codec::run`, `core::run`), and must give every connection
//! exactly what message-by-message delivery gives it: each frame once, in the order
//! the publisher sent it, interleaved correctly with replies and other channels, and
//! across federation links.

mod common;

use common::federation::{read_until_end, subscriber, wait_interest};
use common::{publish_frame, Broker};

/// The `message` of each frame in `lines` (raw JSON text as the broker wrote it) with
/// the frame's command and channel, for comparing whole streams.
fn describe(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON frame");
    match v["command"].as_str() {
        Some("MESSAGE") => format!("MESSAGE {} {}", v["channel"], v["message"]),
        Some("PUBLISHED") => format!("PUBLISHED {} {} {}", v["channel"], v["receivers"], v["id"]),
        Some("PONG") => format!("PONG {}", v["id"]),
        _ => panic!("unexpected frame {line}"),
    }
}

/// Reads frames up to and including the `PONG`.
fn until_pong(c: &mut common::Conn) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let d = describe(&c.recv_line());
        let done = d.starts_with("PONG");
        got.push(d);
        if done {
            return got;
        }
    }
}

/// One write carrying publishes to two channels, one with `ack`, and a `PING`: the
/// publisher (echo on) sees its messages, its `PUBLISHED` and its `PONG` in the order it
/// sent the frames; a subscriber holding two patterns that match gets each message once.
#[test]
fn a_burst_keeps_every_frame_in_order_and_each_message_once() {
    let broker = Broker::start(&[]);
    let mut both = broker.connect();
    both.subscribe("a.b");
    both.subscribe("a.*");
    let mut other = subscriber(&broker, "a.c");
    let mut publisher = subscriber(&broker, "a.b");
    let mut burst = String::new();
    for (channel, message, ack) in [
        ("a.b", "1", false),
        ("a.b", "2", false),
        ("a.b", "3", true),
        ("a.b", "4", false),
        ("a.c", "5", false),
        ("a.b", "6", false),
        ("a.b", "7", false),
    ] {
        let mut frame = publish_frame(channel, message, ack);
        if ack {
            frame.insert_str(frame.len() - 1, r#","id":"p3""#);
        }
        burst.push_str(&frame);
        burst.push('\n');
    }
    burst.push_str("{\"command\":\"PING\",\"id\":\"sync\"}\n");
    publisher.send_raw(burst.as_bytes());
    let m = |c: &str, n: u32| format!("MESSAGE \"{c}\" {n}");
    assert_eq!(
        until_pong(&mut publisher),
        [
            m("a.b", 1),
            m("a.b", 2),
            m("a.b", 3),
            "PUBLISHED \"a.b\" 2 \"p3\"".to_string(),
            m("a.b", 4),
            m("a.b", 6),
            m("a.b", 7),
            "PONG \"sync\"".to_string(),
        ]
    );
    let want: Vec<String> = [1, 2, 3, 4, 6, 7].iter().map(|&n| m("a.b", n)).collect();
    let mut want_both = want.clone();
    want_both.insert(4, m("a.c", 5));
    for (conn, want) in [(&mut both, want_both), (&mut other, vec![m("a.c", 5)])] {
        conn.send("{\"command\":\"PING\",\"id\":\"sync\"}");
        let mut got = until_pong(conn);
        assert_eq!(got.pop().as_deref(), Some("PONG \"sync\""));
        assert_eq!(got, want);
    }
}

/// A publisher with `echo` false is not sent its own burst, while another subscriber
/// is; the counters say one publish and one delivery per message.
#[test]
fn a_burst_skips_a_publisher_without_echo_and_counts_each_message() {
    let broker = Broker::start(&[]);
    let mut publisher = broker.connect();
    publisher.hello(r#","echo":false"#);
    publisher.subscribe("news");
    let mut sub = subscriber(&broker, "news");
    let before = broker.stats();
    let mut burst = String::new();
    for i in 0..50 {
        burst.push_str(&publish_frame("news", &i.to_string(), false));
        burst.push('\n');
    }
    burst.push_str("{\"command\":\"PING\",\"id\":\"sync\"}\n");
    publisher.send_raw(burst.as_bytes());
    assert_eq!(until_pong(&mut publisher), ["PONG \"sync\""]);
    for i in 0..50 {
        assert_eq!(sub.expect_message("news"), i.to_string());
    }
    let after = broker.stats();
    let grew =
        |field: &str| after[field].as_u64().unwrap_or(0) - before[field].as_u64().unwrap_or(0);
    assert_eq!(grew("published"), 50, "{after}");
    assert_eq!(grew("delivered"), 50, "{after}");
}

/// A burst far larger than one run (16 KiB of frames) and than one read (64 KiB), to
/// three subscribers: every message arrives once, in order.
#[test]
fn a_burst_larger_than_a_run_arrives_whole_and_in_order() {
    let broker = Broker::start(&[]);
    let mut subs: Vec<_> = (0..3).map(|_| subscriber(&broker, "bulk")).collect();
    let mut publisher = broker.connect();
    let pad = "x".repeat(100);
    let mut burst = String::new();
    for i in 0..3_000 {
        burst.push_str(&publish_frame("bulk", &format!("\"{i} {pad}\""), false));
        burst.push('\n');
    }
    burst.push_str(&publish_frame("bulk", "\"end\"", false));
    burst.push('\n');
    publisher.send_raw(burst.as_bytes());
    let want: Vec<String> = (0..3_000).map(|i| format!("\"{i} {pad}\"")).collect();
    for s in &mut subs {
        assert_eq!(read_until_end(s), want);
    }
}

/// A burst published at a leaf reaches subscribers at the leaf, at the hub and at
/// another leaf once each, in order: a link among the receivers takes the messages
/// one by one, each with its own sequence number.
#[test]
fn a_burst_crosses_links_once_each_in_order() {
    let hub = Broker::named("hub", &[]);
    let leaf_a = Broker::named("leaf-a", &["--upstream", &hub.addr()]);
    let leaf_b = Broker::named("leaf-b", &["--upstream", &hub.addr()]);
    let mut subs = vec![
        subscriber(&leaf_a, "news"),
        subscriber(&hub, "news"),
        subscriber(&leaf_b, "news"),
    ];
    wait_interest(&hub, "leaf-a", 1);
    wait_interest(&hub, "leaf-b", 1);
    wait_interest(&leaf_a, "hub", 1);
    let mut publisher = leaf_a.connect();
    let mut burst = String::new();
    for i in 0..200 {
        burst.push_str(&publish_frame("news", &i.to_string(), false));
        burst.push('\n');
    }
    burst.push_str(&publish_frame("news", "\"end\"", false));
    burst.push('\n');
    publisher.send_raw(burst.as_bytes());
    let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    for s in &mut subs {
        assert_eq!(read_until_end(s), want);
        s.ping();
    }
}

/// In a burst, messages too large for a link's peer are skipped on that link only
/// (counted), the others cross in order, and equal payloads cross as the distinct
/// messages they are.
#[test]
fn a_burst_skips_only_what_a_peer_refuses() {
    let hub = Broker::named("hub", &["--max-frame", "4096"]);
    let leaf = Broker::named("leaf", &["--upstream", &hub.addr(), "--max-frame", "65536"]);
    let mut at_hub = subscriber(&hub, "news");
    let mut at_leaf = subscriber(&leaf, "news");
    wait_interest(&leaf, "hub", 1);
    let big = format!("\"{}\"", "b".repeat(7_000));
    let messages = ["1", &big, "\"same\"", "\"same\"", &big, "5", "\"end\""];
    let mut burst = String::new();
    for m in messages {
        burst.push_str(&publish_frame("news", m, false));
        burst.push('\n');
    }
    leaf.connect().send_raw(burst.as_bytes());
    let all: Vec<String> = messages[..6].iter().map(|m| m.to_string()).collect();
    assert_eq!(read_until_end(&mut at_leaf), all);
    let small: Vec<String> = ["1", "\"same\"", "\"same\"", "5"]
        .map(String::from)
        .to_vec();
    assert_eq!(read_until_end(&mut at_hub), small);
    at_hub.ping();
    let link = leaf.link("hub").expect("the link to the hub is still up");
    assert_eq!(link["too_large"], 2, "{link}");
}
