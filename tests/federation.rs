//! Federation: several real `broker` processes joined by `--upstream` links.
//!
//! Each test builds a topology on loopback, waits for links and interest to settle by
//! polling the brokers' `STATS` (bounded), then checks delivery over raw connections.
//! Nothing here depends on timing to pass: waits are on observable state, and every
//! wait has a deadline that only fails the test.

mod common;

use common::federation::{read_until_end, subscriber, wait_interest};
use common::{unused_addr, wait_until, Broker, Conn};

#[test]
fn hub_with_three_leaves_delivers_everywhere_exactly_once() {
    let hub = Broker::named("hub", &[]);
    let leaves: Vec<Broker> = ["leaf-a", "leaf-b", "leaf-c"]
        .iter()
        .map(|n| Broker::named(n, &["--upstream", &hub.addr()]))
        .collect();
    let mut subs: Vec<Conn> = leaves.iter().map(|l| subscriber(l, "news")).collect();
    let mut at_hub = subscriber(&hub, "news");
    for name in ["leaf-a", "leaf-b", "leaf-c"] {
        wait_interest(&hub, name, 1);
    }
    for leaf in &leaves {
        wait_interest(leaf, "hub", 1);
    }
    let mut p = leaves[0].connect();
    for i in 0..100 {
        p.publish("news", &i.to_string());
    }
    p.publish("news", "\"end\"");
    let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    for s in subs.iter_mut().chain(std::iter::once(&mut at_hub)) {
        assert_eq!(read_until_end(s), want);
    }
    // Nothing more: a PING answered after the sentinel proves no duplicate is queued
    // behind it on the local broker.
    for s in subs.iter_mut() {
        s.ping();
    }
}

#[test]
fn tree_of_depth_three_with_wildcards() {
    // top <- mid <- low, and side <- top.
    let top = Broker::named("top", &[]);
    let mid = Broker::named("mid", &["--upstream", &top.addr()]);
    let low = Broker::named("low", &["--upstream", &mid.addr()]);
    let side = Broker::named("side", &["--upstream", &top.addr()]);
    let mut star = subscriber(&low, "sensors.*.temp");
    let mut tail = subscriber(&side, "sensors.>");
    let mut exact = subscriber(&mid, "sensors.kitchen.temp");
    wait_interest(&top, "mid", 2);
    wait_interest(&top, "side", 1);
    wait_interest(&side, "top", 2);
    wait_interest(&low, "mid", 2);
    let mut p = side.connect();
    p.publish("sensors.kitchen.temp", "21.5");
    p.publish("sensors.kitchen.humidity", "40");
    p.publish("sensors.cellar.temp", "12.0");
    p.publish("sensors.kitchen.temp", "\"end\"");
    assert_eq!(read_until_end(&mut star), vec!["21.5", "12.0"]);
    assert_eq!(read_until_end(&mut exact), vec!["21.5"]);
    // The publisher's own broker also delivers locally to `sensors.>`.
    assert_eq!(read_until_end(&mut tail), vec!["21.5", "40", "12.0"]);
}

#[test]
fn unsubscribe_withdraws_interest_and_traffic_stops() {
    let hub = Broker::named("hub", &[]);
    let leaf = Broker::named("leaf", &["--upstream", &hub.addr()]);
    let mut s = subscriber(&leaf, "orders.>");
    wait_interest(&hub, "leaf", 1);
    let mut p = hub.connect();
    assert_eq!(
        p.publish("orders.new", "1"),
        1,
        "the link counts as a receiver"
    );
    assert_eq!(s.expect_message("orders.new"), "1");
    assert_eq!(s.unsubscribe("orders.>"), 0);
    wait_until("interest withdrawn at the hub", || {
        hub.link("leaf")
            .is_some_and(|l| l["interest_in"].as_u64() == Some(0))
    });
    let before = hub.link("leaf").expect("link")["routes_out"].clone();
    for _ in 0..50 {
        assert_eq!(p.publish("orders.new", "2"), 0);
    }
    let after = hub.link("leaf").expect("link")["routes_out"].clone();
    assert_eq!(before, after, "messages crossed a link without interest");
    // Messages published where nobody is interested never crossed either.
    assert_eq!(leaf.link("hub").expect("link")["routes_in"], before);
}

#[test]
fn publisher_order_survives_two_hops() {
    let hub = Broker::named("hub", &[]);
    let a = Broker::named("a", &["--upstream", &hub.addr()]);
    let b = Broker::named("b", &["--upstream", &hub.addr()]);
    let mut s = subscriber(&b, "seq");
    wait_interest(&hub, "b", 1);
    wait_interest(&a, "hub", 1);
    let mut p = a.connect();
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&common::publish_frame("seq", &i.to_string(), false));
        batch.push('\n');
    }
    batch.push_str(&common::publish_frame("seq", "\"end\"", false));
    batch.push('\n');
    p.send_raw(batch.as_bytes());
    let got = read_until_end(&mut s);
    let want: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "messages arrived out of order or were lost");
}

#[test]
fn cycle_of_three_delivers_once_and_traffic_stays_bounded() {
    // a -> b -> c -> a: a misconfiguration with a loop.
    let pa = unused_addr();
    let pb = unused_addr();
    let pc = unused_addr();
    let a = Broker::named_on("a", &pa, &["--upstream", &pb]);
    let b = Broker::named_on("b", &pb, &["--upstream", &pc]);
    let c = Broker::named_on("c", &pc, &["--upstream", &pa]);
    let mut sa = subscriber(&a, "loop");
    let mut sb = subscriber(&b, "loop");
    let mut sc = subscriber(&c, "loop");
    for (node, peers) in [(&a, ["b", "c"]), (&b, ["a", "c"]), (&c, ["a", "b"])] {
        for peer in peers {
            wait_interest(node, peer, 1);
        }
    }
    let mut p = a.connect();
    // One message at a time, each awaited everywhere: with two paths to each broker,
    // only the order of arrival across paths could otherwise differ.
    for i in 0..50 {
        p.publish("loop", &i.to_string());
        for s in [&mut sa, &mut sb, &mut sc] {
            assert_eq!(s.expect_message("loop"), i.to_string());
        }
    }
    // Every duplicate is dropped before delivery: a PING round trip after the last
    // message shows nothing else queued.
    for s in [&mut sa, &mut sb, &mut sc] {
        s.ping();
    }
    // Traffic is bounded: with path vectors each message crosses each of the three
    // links at most once in each direction.
    let total: u64 = [&a, &b, &c]
        .iter()
        .flat_map(|n| n.stats()["links"].as_array().cloned().unwrap_or_default())
        .map(|l| l["routes_out"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        total <= 50 * 6,
        "links carried {total} messages for 50 published"
    );
    let again: u64 = [&a, &b, &c]
        .iter()
        .flat_map(|n| n.stats()["links"].as_array().cloned().unwrap_or_default())
        .map(|l| l["routes_out"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total, again,
        "messages kept circulating after publishing stopped"
    );
}

#[test]
fn hub_killed_and_restarted_restores_delivery() {
    let hub_addr = unused_addr();
    let mut hub = Broker::named_on("hub", &hub_addr, &[]);
    let fast = [
        "--upstream",
        hub_addr.as_str(),
        "--link-backoff-max-ms",
        "200",
    ];
    let a = Broker::named("a", &fast);
    let b = Broker::named("b", &fast);
    let mut s = subscriber(&b, "alerts");
    wait_interest(&hub, "b", 1);
    wait_interest(&a, "hub", 1);
    let mut p = a.connect();
    p.publish("alerts", "\"before\"");
    assert_eq!(s.expect_message("alerts"), "\"before\"");

    hub.kill();
    // Local delivery never stops while the link is down.
    let mut local = subscriber(&a, "alerts");
    assert_eq!(p.publish("alerts", "\"local\""), 1);
    assert_eq!(local.expect_message("alerts"), "\"local\"");

    let hub = Broker::named_on("hub", &hub_addr, &[]);
    wait_interest(&hub, "b", 1);
    wait_interest(&hub, "a", 1);
    wait_interest(&a, "hub", 1);
    p.publish("alerts", "\"after\"");
    assert_eq!(s.expect_message("alerts"), "\"after\"");
    assert_eq!(local.expect_message("alerts"), "\"after\"");
}

#[test]
fn echo_false_holds_across_links() {
    let hub = Broker::named("hub", &[]);
    let a = Broker::named("a", &["--upstream", &hub.addr()]);
    let b = Broker::named("b", &["--upstream", &hub.addr()]);
    let mut me = a.connect();
    me.hello(r#","echo":false"#);
    me.subscribe("room");
    let mut other = subscriber(&b, "room");
    wait_interest(&hub, "a", 1);
    wait_interest(&hub, "b", 1);
    wait_interest(&a, "hub", 1);
    wait_interest(&b, "hub", 1);
    me.publish("room", "\"mine\"");
    assert_eq!(other.expect_message("room"), "\"mine\"");
    // A message from elsewhere does arrive, and it is the first thing `me` sees:
    // its own message never came back over the link.
    let mut third = b.connect();
    third.publish("room", "\"theirs\"");
    assert_eq!(other.expect_message("room"), "\"theirs\"");
    assert_eq!(me.expect_message("room"), "\"theirs\"");
}

#[test]
fn refuses_links_to_itself_and_duplicate_names() {
    let port = unused_addr();
    let selfish = Broker::named_on("loner", &port, &["--upstream", &port]);
    selfish.wait_log("refusing link");

    let hub = Broker::named("hub", &[]);
    let _first = Broker::named("twin", &["--upstream", &hub.addr()]);
    wait_until("first twin linked", || hub.link("twin").is_some());
    let _second = Broker::named("twin", &["--upstream", &hub.addr()]);
    hub.wait_log("a link from a broker named 'twin' is already up");
    // The first link is unaffected.
    assert!(hub.link("twin").is_some());
    let links = hub.stats()["links"].as_array().map_or(0, Vec::len);
    assert_eq!(links, 1);
}

#[test]
fn plain_clients_cannot_send_broker_frames() {
    let hub = Broker::named("hub", &[]);
    let mut c = hub.connect();
    for frame in [
        r#"{"command":"ROUTE","channel":"x","seq":1,"path":["evil"],"message":1}"#,
        r#"{"command":"INTEREST","channel":"x","path":["evil"]}"#,
        r#"{"command":"NOINTEREST","channel":"x","origin":"evil"}"#,
    ] {
        c.send(frame);
        let e = c.expect("ERROR");
        assert_eq!(e["code"], "unknown_command");
    }
    c.ping();
}
