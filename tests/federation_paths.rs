//! Federation's path vectors and interest propagation (federation.md, "Loop
//! prevention" and "Interest propagation"), seen from hand-driven links: what a broker
//! sends on each link, and what it refuses. Each test is named after the behaviour it
//! pins, and fails when that behaviour is removed from the broker.

mod common;

use common::federation::{read_until_end, subscriber, FakeLink};
use common::Broker;
use serde_json::{json, Value};

/// The `command`s of `frames`, in order.
fn commands(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["command"].as_str().unwrap_or("?"))
        .collect()
}

/// "A broker never sends a frame to a broker on its path": a ROUTE that came from x is
/// not sent back to x, though x wants the channel; a message published locally is.
/// The link's counters say the same.
#[test]
fn a_message_is_never_sent_back_to_a_broker_on_its_path() {
    let hub = Broker::named("hub", &[]);
    let mut local = subscriber(&hub, "news");
    let mut x = FakeLink::open(&hub, "x", None);
    x.interest("news", r#"["x"]"#);
    assert_eq!(
        x.frames_until_pong(),
        vec![json!({"command":"INTEREST","channel":"news","path":["hub"]})],
        "the hub's own interest, announced when the link came up"
    );
    x.route("news", 1, r#"["x"]"#, r#""from x""#);
    assert_eq!(x.frames_until_pong(), Vec::<Value>::new(), "sent back to x");
    assert_eq!(local.expect_message("news"), r#""from x""#);

    let mut publisher = hub.connect();
    assert_eq!(publisher.publish("news", r#""local""#), 2, "local and x");
    let frames = x.frames_until_pong();
    assert_eq!(commands(&frames), ["ROUTE"], "{frames:?}");
    assert_eq!(frames[0]["path"], json!(["hub"]));
    assert_eq!(frames[0]["message"], "local");
    assert_eq!(local.expect_message("news"), r#""local""#);

    let link = hub.link("x").expect("x's link is up");
    assert_eq!(
        link,
        json!({
            "peer": "x",
            "direction": "in",
            "interest_in": 1,
            "interest_out": 1,
            "max_frame": 1 << 20,
            "routes_in": 1,
            "routes_out": 1,
            "interest_updates_out": 1,
            "interest_updates_in": 1,
            "slow_consumer": 0,
            "refused_in": 0,
            "too_large": 0,
        })
    );
}

/// "A broker that learns an interest on one link announces it on its other links,
/// with itself added to the path, unless the broker on the other side is already on
/// the path."
#[test]
fn an_interest_is_forwarded_with_the_path_but_never_to_a_broker_on_it() {
    let hub = Broker::named("hub", &[]);
    let mut x = FakeLink::open(&hub, "x", None);
    let mut y = FakeLink::open(&hub, "y", None);
    // y is on this one's path (not as its origin, which is filtered on its own):
    // y is not told of it.
    x.interest("via.y", r#"["o","y","x"]"#);
    x.interest("from.x", r#"["x"]"#);
    assert_eq!(x.frames_until_pong(), Vec::<Value>::new());
    assert_eq!(
        y.frames_until_pong(),
        vec![json!({"command":"INTEREST","channel":"from.x","path":["x","hub"]})]
    );
    assert_eq!(hub.link("x").expect("x")["interest_in"], 2);
    assert_eq!(hub.link("y").expect("y")["interest_out"], 1);
}

/// "An interest whose path already holds the receiving broker is ignored", and a
/// ROUTE whose path holds it is dropped: neither goes round a loop.
#[test]
fn a_frame_whose_path_holds_the_receiving_broker_is_dropped() {
    let hub = Broker::named("hub", &[]);
    let mut sub = subscriber(&hub, "news");
    let mut x = FakeLink::open(&hub, "x", None);
    let mut y = FakeLink::open(&hub, "y", None);
    x.interest("loop", r#"["hub","x"]"#);
    x.route("news", 1, r#"["hub","x"]"#, r#""looped""#);
    x.route("news", 2, r#"["x"]"#, r#""end""#);
    x.sync();
    assert_eq!(read_until_end(&mut sub), Vec::<String>::new());
    y.sync();
    let link = hub.link("x").expect("x");
    assert_eq!(
        (link["interest_in"].as_u64(), link["routes_in"].as_u64()),
        (Some(0), Some(1)),
        "{link}"
    );
    assert_eq!(link["refused_in"], 2, "{link}");
    assert_eq!(
        hub.link("y").expect("y")["interest_out"],
        1,
        "only the hub's own news"
    );
}

/// "Paths longer than 32 brokers are refused."
#[test]
fn a_path_longer_than_32_brokers_is_refused() {
    let hub = Broker::named("hub", &[]);
    let mut sub = subscriber(&hub, "news");
    let mut x = FakeLink::open(&hub, "x", None);
    let path = |len: usize| {
        let mut names: Vec<String> = (1..len).map(|i| format!("\"b{i}\"")).collect();
        names.push("\"x\"".to_string());
        format!("[{}]", names.join(","))
    };
    x.route("news", 1, &path(33), r#""33 brokers""#);
    x.route("news", 2, &path(32), r#""32 brokers""#);
    x.route("news", 3, r#"["x"]"#, r#""end""#);
    x.sync();
    assert_eq!(read_until_end(&mut sub), vec![r#""32 brokers""#]);
}

/// "When a link comes up, each side sends the other all of its interest", and "when
/// a link goes down, everything learned from it is withdrawn from the other links".
#[test]
fn a_new_link_learns_all_interest_and_a_lost_link_is_withdrawn() {
    let hub = Broker::named("hub", &[]);
    let _sub = subscriber(&hub, "news.*");
    let mut x = FakeLink::open(&hub, "x", None);
    x.interest("from.x", r#"["x"]"#);
    x.sync();
    let mut y = FakeLink::open(&hub, "y", None);
    let mut got = y.frames_until_pong();
    got.sort_by_key(|f| f["channel"].to_string());
    assert_eq!(
        got,
        vec![
            json!({"command":"INTEREST","channel":"from.x","path":["x","hub"]}),
            json!({"command":"INTEREST","channel":"news.*","path":["hub"]}),
        ]
    );
    drop(x);
    // The hub withdraws x's interest once it sees x's link close.
    let frame = y.conn.recv();
    assert_eq!(
        frame,
        json!({"command":"NOINTEREST","channel":"from.x","origin":"x"})
    );
    assert_eq!(y.frames_until_pong(), Vec::<Value>::new());
}

/// "When the last local client unsubscribes or disconnects, it sends NOINTEREST";
/// only the first local subscriber of a pattern is announced.
#[test]
fn interest_follows_the_first_and_last_local_subscriber() {
    let hub = Broker::named("hub", &[]);
    let mut x = FakeLink::open(&hub, "x", None);
    let mut a = subscriber(&hub, "news");
    let b = subscriber(&hub, "news");
    let interest = json!({"command":"INTEREST","channel":"news","path":["hub"]});
    let no_interest = json!({"command":"NOINTEREST","channel":"news","origin":"hub"});
    assert_eq!(x.frames_until_pong(), vec![interest.clone()]);
    a.unsubscribe("news");
    assert_eq!(
        x.frames_until_pong(),
        Vec::<Value>::new(),
        "b still wants it"
    );
    drop(b);
    assert_eq!(x.conn.recv(), no_interest);
    a.subscribe("news");
    assert_eq!(x.frames_until_pong(), vec![interest]);
    a.unsubscribe("news");
    assert_eq!(x.frames_until_pong(), vec![no_interest]);
}
