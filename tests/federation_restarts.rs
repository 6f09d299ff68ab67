//! Federation faults, part two: a link cut in the middle of a frame, brokers that come
//! back under another name, and a hub restarted on its port while leaves hold interest.
//! The set-up and checks are shared with `federation_faults.rs` (`common::faults`).

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::faults::*;
use common::federation::{subscriber, FakeLink};
use common::{unused_addr, wait_until, Broker};
use serde_json::Value;

/// A `ROUTE` a hand-driven link cuts in half.
const CUT_ROUTE: &str =
    r#"{"command":"ROUTE","channel":"news","seq":7,"path":["x"],"message":"cut"}"#;

/// A link `x` sends the first half of a `ROUTE`, then its connection ends (a clean
/// close, or a reset). The hub drops the half frame (nothing delivered), logs the link
/// down, keeps serving, and takes a new link named `x` afterwards, which delivers the
/// same `ROUTE` sent whole: the half was never taken for a message it had seen.
fn cut_a_link_in_the_middle_of_a_route(reset: bool) {
    let hub = Broker::named("hub", &[]);
    let mut local = subscriber(&hub, "news");
    let mut x = FakeLink::open(&hub, "x", None);
    // Reads the hub's INTEREST: nothing unread is left, so a close is a clean FIN.
    x.sync();
    x.conn
        .send_raw(&CUT_ROUTE.as_bytes()[..CUT_ROUTE.len() / 2]);
    wait_until("the hub holds the half frame", || {
        hub.stats()["memory"]["input"].as_u64() > Some(0)
    });
    if reset {
        socket2::SockRef::from(x.conn.stream())
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
    } else {
        x.conn.stream().shutdown(Shutdown::Both).expect("shutdown");
    }
    drop(x);
    hub.wait_log(r#"link closed peer=Some("x")"#);
    wait_until("the half frame released", || {
        hub.stats()["memory"]["input"].as_u64() == Some(0)
    });
    // Nothing was delivered: PONG is the next frame.
    local.ping();
    assert_serves_locally(&hub, "local.hub");
    assert_eq!(peers(&hub), Vec::<String>::new());
    assert_eq!(hub.stats()["duplicates_dropped"], 0);

    let mut x = FakeLink::open(&hub, "x", None);
    x.sync();
    x.conn.send(CUT_ROUTE);
    x.sync();
    assert_eq!(local.expect_message("news"), "\"cut\"");
    local.ping();
    let link = hub.link("x").expect("the new link is up");
    assert_eq!(link["routes_in"], 1, "{link}");
    assert_eq!(hub.stats()["duplicates_dropped"], 0);
}

/// The connection ends with a FIN after half a frame.
#[test]
fn link_closed_in_the_middle_of_a_frame() {
    cut_a_link_in_the_middle_of_a_route(false);
}

/// The connection is reset (SO_LINGER 0) after half a frame.
#[test]
fn link_reset_in_the_middle_of_a_frame() {
    cut_a_link_in_the_middle_of_a_route(true);
}

// ---------------------------------------------------------------------------------
// A peer restarts with another name.
// ---------------------------------------------------------------------------------

/// leaf-a dies and a broker named leaf-b starts on its port (its clients come back
/// and subscribe again). The hub drops everything it knew under leaf-a: no link of
/// that name, and the other leaf's interest from the hub holds the new name's entry
/// alone; delivery reaches the new broker exactly once.
#[test]
fn a_leaf_that_restarts_with_another_name() {
    let hub = Broker::named("hub", &[]);
    let port = unused_addr();
    let c = leaf("leaf-c", &hub.addr(), &[]);
    let mut old = leaf_on("leaf-a", &port, &hub.addr());
    let _s = subscriber(&old, "news");
    wait_interest_exactly(&hub, "leaf-a", 1);
    wait_interest_exactly(&c, "hub", 1);
    let updates = |c: &Broker| {
        c.link("hub")
            .map_or(0, |l| l["interest_updates_in"].as_u64().unwrap_or(0))
    };
    let announced = updates(&c);

    old.kill();
    let new = leaf_on("leaf-b", &port, &hub.addr());
    let mut s = subscriber(&new, "news");
    wait_interest_exactly(&hub, "leaf-b", 1);
    wait_link_down(&hub, "leaf-a");
    // c has heard both the withdrawal under the old name and the announcement under
    // the new one, and holds the new one alone.
    wait_until("c told of the rename", || updates(&c) >= announced + 2);
    wait_interest_exactly(&c, "hub", 1);
    assert_eq!(peers(&hub), ["leaf-b", "leaf-c"]);

    let mut p = c.connect();
    assert_eq!(p.publish("news", "\"to the new name\""), 1, "the link");
    assert_eq!(s.expect_message("news"), "\"to the new name\"");
    s.ping();
    assert_nothing_circulates(&[&hub, &c, &new]);
}

/// The hub dies and a broker named hub-2 starts on its port. The leaves re-dial the
/// port, link to hub-2 under its name (no link named hub is left) and re-announce
/// their interest to it; delivery between them works through it.
#[test]
fn a_hub_that_restarts_with_another_name() {
    let hub_addr = unused_addr();
    let mut hub = Broker::named_on("hub", &hub_addr, &[]);
    let a = leaf("leaf-a", &hub_addr, &[]);
    let b = leaf("leaf-b", &hub_addr, &[]);
    let mut at_b = subscriber(&b, "news");
    wait_interest_exactly(&a, "hub", 1);

    hub.kill();
    let hub2 = Broker::named_on("hub-2", &hub_addr, &[]);
    wait_interest_exactly(&hub2, "leaf-b", 1);
    wait_interest_exactly(&a, "hub-2", 1);
    assert_eq!(peers(&a), ["hub-2"]);
    assert_eq!(peers(&b), ["hub-2"]);
    assert_eq!(peers(&hub2), ["leaf-a", "leaf-b"]);

    let mut p = a.connect();
    assert_eq!(p.publish("news", "\"via hub-2\""), 1, "the link");
    assert_eq!(at_b.expect_message("news"), "\"via hub-2\"");
    at_b.ping();
    assert_nothing_circulates(&[&hub2, &a, &b]);
}

// ---------------------------------------------------------------------------------
// A broker restarted on its port while its peers hold interest.
// ---------------------------------------------------------------------------------

/// The hub is stopped (SIGTERM, a clean shutdown) and started again on its port while
/// three leaves hold exact and wildcard subscriptions. The leaves re-dial and
/// re-announce every pattern (the restarted hub learns exactly what the first one
/// knew), and a message published on one leaf reaches the subscribers on the others
/// exactly once.
#[test]
fn a_hub_restarted_on_its_port_while_leaves_hold_interest() {
    let hub_addr = unused_addr();
    let mut hub = Broker::named_on("hub", &hub_addr, &[]);
    let a = leaf("leaf-a", &hub_addr, &[]);
    let b = leaf("leaf-b", &hub_addr, &[]);
    let c = leaf("leaf-c", &hub_addr, &[]);
    let mut a_orders = subscriber(&a, "orders.>");
    let mut b_news = subscriber(&b, "news");
    let mut b_eu = subscriber(&b, "orders.eu");
    let mut c_star = subscriber(&c, "*");
    let mut c_news = subscriber(&c, "news");
    let expected = [("leaf-a", 1), ("leaf-b", 2), ("leaf-c", 2)];
    let settle = |hub: &Broker| {
        for (leaf, n) in expected {
            wait_interest_exactly(hub, leaf, n);
        }
        // Each leaf learns, through the hub, every other leaf's patterns.
        wait_interest_exactly(&a, "hub", 4);
        wait_interest_exactly(&b, "hub", 3);
        wait_interest_exactly(&c, "hub", 3);
    };
    settle(&hub);
    let before = traffic(&hub);

    hub.sigterm();
    hub.wait_exit();
    for leaf in [&a, &b, &c] {
        wait_link_down(leaf, "hub");
    }
    let hub = Broker::named_on("hub", &hub_addr, &[]);
    settle(&hub);
    let links = |t: &Value| -> Vec<(Value, Value)> {
        t["links"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| (l["peer"].clone(), l["interest_updates_in"].clone()))
            .collect()
    };
    assert_eq!(
        links(&traffic(&hub)),
        links(&before),
        "the restarted hub was told each leaf's patterns as often as the first one"
    );

    let mut p = a.connect();
    assert_eq!(p.publish("news", "\"n1\""), 1, "the link");
    let mut q = b.connect();
    assert_eq!(q.publish("orders.eu", "\"o1\""), 2, "b_eu and the link");
    for (s, channel, want) in [
        (&mut b_news, "news", "\"n1\""),
        (&mut c_news, "news", "\"n1\""),
        (&mut c_star, "news", "\"n1\""),
        (&mut b_eu, "orders.eu", "\"o1\""),
        (&mut a_orders, "orders.eu", "\"o1\""),
    ] {
        assert_eq!(s.expect_message(channel), want);
        // Exactly once: nothing else is queued behind it.
        s.ping();
    }
    assert_nothing_circulates(&[&hub, &a, &b, &c]);
}
