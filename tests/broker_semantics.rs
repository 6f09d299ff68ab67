//! Publish/subscribe semantics against the real broker: wildcard matching, at-most-once
//! delivery per connection, idempotent SUBSCRIBE and exact-text UNSUBSCRIBE, case-
//! sensitive channels, `echo: false`, no history, subscriptions dropped on disconnect,
//! per-publisher ordering, one ordered output stream per connection, and fan-out to
//! 1,000 concurrent clients.

mod common;

use std::sync::mpsc;
use std::thread;

use common::{json_str, publish_frame, Broker, Conn, TIMEOUT};

/// Number of PUBLISH round trips a test may spend waiting for the broker to notice a
/// disconnect before it fails.
const DISCONNECT_TRIES: usize = 10_000;

/// A broker, a publisher connection, and a subscriber of `channel` (subscription
/// confirmed). The broker is returned so that it lives as long as the test.
fn publisher_and_subscriber(channel: &str) -> (Broker, Conn, Conn) {
    let broker = Broker::start(&[]);
    let publisher = broker.connect();
    let mut sub = broker.connect();
    sub.subscribe(channel);
    (broker, publisher, sub)
}

/// Checks that nothing was delivered to `conn` beyond what it already read.
fn assert_nothing_pending(conn: &mut Conn) {
    conn.send(r#"{"command":"PING","id":"sync"}"#);
    let v = conn.recv();
    assert_eq!(
        v["command"], "PONG",
        "expected nothing before PONG, got {v}"
    );
    assert_eq!(v["id"], "sync");
}

#[test]
fn wildcards_match_as_specified() {
    let broker = Broker::start(&[]);
    let mut publisher = broker.connect();
    // (pattern, channel, matches)
    let cases = [
        ("a.b", "a.b", true),
        ("a.b", "a.b.c", false),
        ("a.b", "a", false),
        ("a.*", "a.b", true),
        ("a.*", "a", false),
        ("a.*", "a.b.c", false),
        ("a.*", "b.a", false),
        ("*", "a", true),
        ("*", "a.b", false),
        ("*.b", "a.b", true),
        ("*.b", "a.c", false),
        ("*.b.*", "x.b.y", true),
        ("*.b.*", "x.b", false),
        ("*.b.*", "x.c.y", false),
        ("*.*", "a.b", true),
        ("*.*", "a", false),
        ("a.>", "a.b", true),
        ("a.>", "a.b.c.d", true),
        ("a.>", "a", false),
        ("a.>", "b.c", false),
        (">", "a", true),
        (">", "a.b.c", true),
        ("a.*.>", "a.b.c", true),
        ("a.*.>", "a.b", false),
        ("*.>", "a.b", true),
        ("*.>", "a", false),
        // Only a whole token is a wildcard.
        ("a*", "a*", true),
        ("a*", "ab", false),
        ("a.b*", "a.bc", false),
        ("a>", "ab", false),
        ("a>", "a>", true),
        // Channels are case-sensitive.
        ("News", "News", true),
        ("News", "news", false),
        ("news.*", "NEWS.x", false),
        ("é.*", "é.ü", true),
        ("é.*", "e.ü", false),
    ];
    for (pattern, channel, matches) in cases {
        let mut sub = broker.connect();
        assert_eq!(sub.subscribe(pattern), 1);
        let receivers = publisher.publish(channel, r#""m""#);
        assert_eq!(
            receivers,
            u64::from(matches),
            "pattern {pattern:?} vs channel {channel:?}"
        );
        if matches {
            assert_eq!(sub.expect_message(channel), r#""m""#);
        }
        assert_nothing_pending(&mut sub);
        // Leave explicitly: a dropped connection may linger in the index for a moment.
        assert_eq!(sub.unsubscribe(pattern), 0);
    }
}

#[test]
fn overlapping_subscriptions_deliver_once() {
    let broker = Broker::start(&[]);
    let mut sub = broker.connect();
    let mut other = broker.connect();
    let mut publisher = broker.connect();
    for (i, pattern) in ["a.b", "a.*", "a.>", ">", "*.b", "*.*"].iter().enumerate() {
        assert_eq!(sub.subscribe(pattern), i as u64 + 1);
    }
    other.subscribe("a.b");
    other.subscribe("a.*");
    for n in 0..5 {
        assert_eq!(publisher.publish("a.b", &n.to_string()), 2);
    }
    for n in 0..5 {
        assert_eq!(sub.expect_message("a.b"), n.to_string());
        assert_eq!(other.expect_message("a.b"), n.to_string());
    }
    assert_nothing_pending(&mut sub);
    assert_nothing_pending(&mut other);
}

#[test]
fn subscribe_is_idempotent() {
    let broker = Broker::start(&[]);
    let mut sub = broker.connect();
    let mut publisher = broker.connect();
    assert_eq!(sub.subscribe("x"), 1);
    assert_eq!(sub.subscribe("x"), 1);
    assert_eq!(sub.subscribe("x.*"), 2);
    assert_eq!(sub.subscribe("x.*"), 2);
    assert_eq!(publisher.publish("x", "1"), 1);
    assert_eq!(sub.expect_message("x"), "1");
    assert_nothing_pending(&mut sub);
    // One UNSUBSCRIBE removes a subscription made twice.
    assert_eq!(sub.unsubscribe("x"), 1);
    assert_eq!(publisher.publish("x", "2"), 0);
    assert_nothing_pending(&mut sub);
    assert_eq!(sub.unsubscribe("x.*"), 0);
    assert_eq!(publisher.publish("x.y", "3"), 0);
    assert_nothing_pending(&mut sub);
}

#[test]
fn unsubscribe_removes_exactly_the_text_given() {
    let broker = Broker::start(&[]);
    let mut sub = broker.connect();
    let mut publisher = broker.connect();
    assert_eq!(sub.subscribe("a.*"), 1);
    // Not subscribed to these texts: not an error, count unchanged.
    assert_eq!(sub.unsubscribe("a.x"), 1);
    assert_eq!(sub.unsubscribe("A.*"), 1);
    assert_eq!(sub.unsubscribe("a.>"), 1);
    assert_eq!(sub.unsubscribe("never.subscribed"), 1);
    assert_eq!(publisher.publish("a.x", "1"), 1);
    assert_eq!(sub.expect_message("a.x"), "1");
    assert_eq!(sub.unsubscribe("a.*"), 0);
    assert_eq!(sub.unsubscribe("a.*"), 0);
    assert_eq!(publisher.publish("a.x", "2"), 0);
    assert_nothing_pending(&mut sub);
}

#[test]
fn channel_is_the_unescaped_string() {
    let broker = Broker::start(&[]);
    let mut sub = broker.connect();
    let mut publisher = broker.connect();
    sub.send(r#"{"command":"SUBSCRIBE","channel":"a\u002eb"}"#);
    let v = sub.expect("SUBSCRIBED");
    assert_eq!(v["channel"], "a.b");
    assert_eq!(v["subscriptions"], 1);
    assert_eq!(publisher.publish("a.b", "1"), 1);
    assert_eq!(sub.expect_message("a.b"), "1");
    publisher.send(r#"{"command":"PUBLISH","channel":"\u00e9t\u00e9","message":2}"#);
    assert_eq!(publisher.expect("PUBLISHED")["receivers"], 0);
    sub.subscribe("été");
    publisher.send(r#"{"command":"PUBLISH","channel":"\u00e9t\u00e9","message":3}"#);
    assert_eq!(publisher.expect("PUBLISHED")["receivers"], 1);
    assert_eq!(sub.expect_message("été"), "3");
}

#[test]
fn echo_false_excludes_own_messages() {
    let broker = Broker::start(&[]);
    let mut quiet = broker.connect();
    let mut other = broker.connect();
    quiet.hello(r#","echo":false"#);
    quiet.subscribe("e");
    other.subscribe("e");
    assert_eq!(quiet.publish("e", r#""from quiet""#), 1);
    assert_eq!(other.expect_message("e"), r#""from quiet""#);
    assert_nothing_pending(&mut quiet);
    // It still receives what others publish (and `other`, echo on, gets its own).
    other.send(&publish_frame("e", r#""from other""#, true));
    let got = other.recv_sorted(2);
    assert_eq!(got[0]["message"], "from other", "{got:?}");
    assert_eq!(got[1]["command"], "PUBLISHED", "{got:?}");
    assert_eq!(got[1]["receivers"], 2, "{got:?}");
    assert_eq!(quiet.expect_message("e"), r#""from other""#);
    // Alone on the channel, nobody receives its message.
    other.unsubscribe("e");
    assert_eq!(quiet.publish("e", "1"), 0);
    assert_nothing_pending(&mut quiet);
}

#[test]
fn echo_is_on_by_default() {
    let broker = Broker::start(&[]);
    let mut plain = broker.connect();
    let mut greeted = broker.connect();
    greeted.hello(r#","echo":true"#);
    for (c, channel) in [(&mut plain, "self.plain"), (&mut greeted, "self.greeted")] {
        c.subscribe(channel);
        c.send(&publish_frame(channel, "7", true));
        let got = c.recv_sorted(2);
        assert_eq!(got[0]["command"], "MESSAGE", "{got:?}");
        assert_eq!(got[0]["message"], 7, "{got:?}");
        assert_eq!(got[1]["command"], "PUBLISHED", "{got:?}");
        assert_eq!(got[1]["receivers"], 1, "{got:?}");
    }
}

#[test]
fn no_history() {
    let broker = Broker::start(&[]);
    let mut publisher = broker.connect();
    let mut sub = broker.connect();
    assert_eq!(publisher.publish("h", r#""before""#), 0);
    sub.subscribe("h");
    assert_eq!(publisher.publish("h", r#""after""#), 1);
    assert_eq!(sub.expect_message("h"), r#""after""#);
    assert_nothing_pending(&mut sub);
}

#[test]
fn disconnect_drops_subscriptions() {
    let (broker, mut publisher, mut sub) = publisher_and_subscriber("d");
    sub.subscribe("d.*");
    assert_eq!(publisher.publish("d", "0"), 1);
    drop(sub);
    let dropped = (0..DISCONNECT_TRIES).any(|_| publisher.publish("d", "1") == 0);
    assert!(
        dropped,
        "receivers never dropped to 0 after the subscriber left"
    );
    assert_eq!(publisher.publish("d.x", "2"), 0);
    // Reconnecting does not bring subscriptions back.
    let mut again = broker.connect();
    again.ping();
    assert_eq!(publisher.publish("d", "3"), 0);
    assert_nothing_pending(&mut again);
}

#[test]
fn ten_thousand_messages_arrive_in_order() {
    const N: usize = 10_000;
    let (_broker, mut publisher, mut sub) = publisher_and_subscriber("seq");
    let mut batch = String::new();
    for i in 0..N {
        batch.push_str(&format!(
            "{{\"command\":\"PUBLISH\",\"channel\":\"seq\",\"message\":{{\"n\":{i}}},\"id\":{i}}}\n"
        ));
    }
    publisher.send_raw(batch.as_bytes());
    for i in 0..N {
        let v = publisher.expect("PUBLISHED");
        assert_eq!(v["id"], i, "replies in command order");
        assert_eq!(v["receivers"], 1);
    }
    for i in 0..N {
        assert_eq!(sub.expect_message("seq"), format!("{{\"n\":{i}}}"));
    }
    assert_nothing_pending(&mut sub);
}

#[test]
fn messages_without_ack_arrive_in_order() {
    const N: usize = 10_000;
    let (_broker, mut publisher, mut sub) = publisher_and_subscriber("seq");
    let mut batch = String::new();
    for i in 0..N {
        batch.push_str(&publish_frame("seq", &i.to_string(), false));
        batch.push('\n');
    }
    publisher.send_raw(batch.as_bytes());
    // No reply to ack:false: the PONG is the first thing the publisher reads.
    publisher.ping();
    for i in 0..N {
        assert_eq!(sub.expect_message("seq"), i.to_string());
    }
    assert_nothing_pending(&mut sub);
}

#[test]
fn message_is_written_before_later_replies() {
    let (_broker, mut publisher, mut sub) = publisher_and_subscriber("o");
    sub.subscribe("o.*");
    let big = json_str(&"x".repeat(20_000)); // a frame shared between queues
    for round in 0..300 {
        let (channel, message) = match round % 3 {
            0 => ("o", round.to_string()),
            1 => ("o.x", format!("[{round}]")),
            _ => ("o", big.clone()),
        };
        assert_eq!(publisher.publish(channel, &message), 1);
        sub.send(&format!(r#"{{"command":"PING","id":{round}}}"#));
        assert_eq!(sub.expect_message(channel), message, "round {round}");
        let v = sub.expect("PONG");
        assert_eq!(v["id"], round);
    }
}

#[test]
fn one_thousand_clients_each_get_the_message() {
    const CLIENTS: usize = 1000;
    let broker = Broker::start(&[]);
    let mut subs: Vec<Conn> = (0..CLIENTS).map(|_| broker.connect()).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        s.send(&format!(
            r#"{{"command":"SUBSCRIBE","channel":"all","id":{i}}}"#
        ));
    }
    for (i, s) in subs.iter_mut().enumerate() {
        let v = s.expect("SUBSCRIBED");
        assert_eq!(v["id"], i);
        assert_eq!(v["subscriptions"], 1);
    }
    let mut publisher = broker.connect();
    assert_eq!(
        publisher.publish("all", r#"{"hello":"everyone"}"#),
        CLIENTS as u64
    );
    for s in &mut subs {
        assert_eq!(s.expect_message("all"), r#"{"hello":"everyone"}"#);
    }
    // All still connected and served.
    for s in &mut subs {
        s.send(r#"{"command":"PING"}"#);
    }
    for s in &mut subs {
        s.expect("PONG");
    }
}

#[test]
fn one_thousand_clients_connected_from_many_threads() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125;
    let broker = Broker::start(&[]);
    let addr = broker.addr();
    let (ready_tx, ready_rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ready = ready_tx.clone();
            let addr = addr.clone();
            thread::spawn(move || {
                let channel = format!("t.{t}");
                let mut conns: Vec<Conn> = (0..PER_THREAD).map(|_| Conn::connect(&addr)).collect();
                for c in &mut conns {
                    assert_eq!(c.subscribe(&channel), 1);
                }
                ready.send(()).expect("main thread gone");
                // Blocks until the main thread publishes (TIMEOUT guards it).
                for c in &mut conns {
                    assert_eq!(c.expect_message(&channel), t.to_string());
                }
            })
        })
        .collect();
    for _ in 0..THREADS {
        ready_rx
            .recv_timeout(TIMEOUT)
            .expect("a client thread did not get its subscriptions in place");
    }
    let mut publisher = broker.connect();
    for t in 0..THREADS {
        let receivers = publisher.publish(&format!("t.{t}"), &t.to_string());
        assert_eq!(receivers, PER_THREAD as u64);
    }
    for h in handles {
        h.join().expect("client thread failed");
    }
}
