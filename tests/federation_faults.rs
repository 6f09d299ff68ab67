//! Federation faults (issue 9, "Federation faults"; docs/federation.md, "Failures" and
//! "Guarantees"): real broker processes on loopback, one fault per test, each named
//! after it. A peer dies (SIGKILL), hangs (SIGSTOP, resumed with SIGCONT), loses its
//! link in the middle of a frame, comes back under another name, or is restarted on
//! its port while its peers hold interest. In every case:
//!
//! - the other brokers keep serving their local clients (publish, subscribe, PING);
//! - nothing circulates: the federation counters in `STATS` stand still once the
//!   brokers are quiet, compared around a PING round trip to each;
//! - delivery across links comes back by itself once the peer returns, each message
//!   once and in order; nothing published while a link was down is replayed.
//!
//! Nothing here depends on timing to pass. Leaves re-dial with
//! `--link-backoff-max-ms 200`, but the tests never measure that: they wait on what the
//! brokers show (a link and its interest in `STATS`, a log line, a message), each wait
//! bounded by [`common::TIMEOUT`], which only fails the test. Every broker is killed
//! when its [`Broker`] is dropped, and a stopped one is resumed when its
//! [`Frozen`](common::broker::Frozen) guard is, so a failing test leaves nothing behind.

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::federation::{read_until_end, subscriber, FakeLink};
use common::{publish_frame, unused_addr, wait_until, Broker, Conn};
use serde_json::{json, Value};

/// The leaves' `--link-backoff-max-ms`: a lost link is dialled again at least every
/// 200 ms, so a returning peer is found quickly (the tests never time it).
const BACKOFF_CAP_MS: &str = "200";

/// `--max-pending` of the broker that sends to a frozen peer in the flood tests: small,
/// so its link to the frozen peer passes it after a few MiB.
const SMALL_MAX_PENDING: u64 = 1 << 20;

/// Slack over `--max-pending` allowed in the memory a broker holds while it floods a
/// frozen peer: the frame that crossed the limit, one turn's read budget of input, and
/// the replies queued to its clients.
const MEMORY_SLACK: u64 = 1 << 20;

/// The padding of each flood message: 16 KiB, 64 of them to a 1 MiB batch.
const FLOOD_PAD: usize = 16 * 1024;
/// Messages per flood batch.
const FLOOD_BATCH: u64 = 64;
/// Flood batches (1 MiB each) sent at most before the test gives up waiting for the
/// link to the frozen peer to be cut: far more than loopback socket buffers hold.
const FLOOD_MAX_BATCHES: u64 = 512;

/// The log line of a broker closing a link whose unsent output passed `--max-pending`.
const SLOW_LINK: &str = "federation link is a slow consumer";

/// A leaf named `name` on a free port, linked to `hub`, re-dialling fast.
fn leaf(name: &str, hub: &str, extra: &[&str]) -> Broker {
    let mut args = vec!["--upstream", hub, "--link-backoff-max-ms", BACKOFF_CAP_MS];
    args.extend_from_slice(extra);
    Broker::named(name, &args)
}

/// A leaf named `name` listening on `listen` (so it can be restarted there).
fn leaf_on(name: &str, listen: &str, hub: &str) -> Broker {
    Broker::named_on(
        name,
        listen,
        &["--upstream", hub, "--link-backoff-max-ms", BACKOFF_CAP_MS],
    )
}

/// Waits until `node` has no link to `peer` (it saw the link go down).
fn wait_link_down(node: &Broker, peer: &str) {
    wait_until(&format!("link to {peer} down"), || {
        node.link(peer).is_none()
    });
}

/// Waits until `node`'s link to `peer` is up with exactly `n` interest entries learned
/// from it (neither a missing re-announcement nor a stale one left behind).
fn wait_interest_exactly(node: &Broker, peer: &str, n: u64) {
    wait_until(&format!("{peer} -> interest == {n}"), || {
        node.link(peer)
            .is_some_and(|l| l["interest_in"].as_u64() == Some(n))
    });
}

/// The names of the peers `node` has links to now, sorted.
fn peers(node: &Broker) -> Vec<String> {
    let mut names: Vec<String> = node.stats()["links"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["peer"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// What moves between brokers, from `node`'s `STATS`: messages published and dropped
/// as duplicates, and per link the messages and interest updates in each direction.
fn traffic(node: &Broker) -> Value {
    let stats = node.stats();
    let mut links: Vec<Value> = stats["links"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            json!({
                "peer": l["peer"],
                "routes_in": l["routes_in"],
                "routes_out": l["routes_out"],
                "interest_updates_in": l["interest_updates_in"],
                "interest_updates_out": l["interest_updates_out"],
                "refused_in": l["refused_in"],
            })
        })
        .collect();
    links.sort_by_key(|l| l["peer"].to_string());
    json!({
        "server": stats["server"],
        "published": stats["published"],
        "duplicates_dropped": stats["duplicates_dropped"],
        "links": links,
    })
}

/// Waits until nothing is in flight on the links among `nodes`: on each link, each
/// side has received as many messages and interest updates as the other side sent.
/// (A link to a broker outside `nodes`, frozen or dead, is not looked at.)
fn wait_links_drained(nodes: &[&Broker]) {
    wait_until("the links among the running brokers drained", || {
        let all: Vec<Value> = nodes.iter().map(|n| traffic(n)).collect();
        let link = |of: &Value, peer: &Value| -> Option<Value> {
            let node = all.iter().find(|t| t["server"] == *of)?;
            node["links"]
                .as_array()?
                .iter()
                .find(|l| l["peer"] == *peer)
                .cloned()
        };
        all.iter().all(|t| {
            t["links"].as_array().into_iter().flatten().all(|out| {
                if !all.iter().any(|n| n["server"] == out["peer"]) {
                    return true;
                }
                link(&out["peer"], &t["server"]).is_some_and(|back| {
                    back["routes_in"] == out["routes_out"]
                        && back["interest_updates_in"] == out["interest_updates_out"]
                })
            })
        })
    });
}

/// Nothing circulates: once nothing is in flight among `nodes`, their federation
/// counters are the same after a PING round trip to each node as before it.
fn assert_nothing_circulates(nodes: &[&Broker]) {
    wait_links_drained(nodes);
    let before: Vec<Value> = nodes.iter().map(|n| traffic(n)).collect();
    for node in nodes {
        node.connect().ping();
    }
    let after: Vec<Value> = nodes.iter().map(|n| traffic(n)).collect();
    assert_eq!(
        before, after,
        "federation traffic moved while nothing was published"
    );
}

/// A fresh connection to `node` subscribes to `channel`, publishes on it and receives
/// its own message, and answers PING: `node` serves its local clients.
fn assert_serves_locally(node: &Broker, channel: &str) {
    let mut c = node.connect();
    c.subscribe(channel);
    c.send(&publish_frame(channel, "\"local\"", true));
    let got = c.recv_sorted(2);
    assert_eq!(got[0]["command"], "MESSAGE", "{got:?}");
    assert_eq!(got[0]["message"], "local", "{got:?}");
    assert_eq!(got[1]["command"], "PUBLISHED", "{got:?}");
    // Withdrawn here, before the connection goes: its end must not be a late
    // interest update that a check for circulation would see.
    assert_eq!(c.unsubscribe(channel), 0);
    c.ping();
}

// ---------------------------------------------------------------------------------
// A peer dies: SIGKILL.
// ---------------------------------------------------------------------------------

/// The hub dies: each leaf sees its link go down and keeps serving its own clients;
/// nothing published meanwhile crosses or is replayed; once a hub runs on the port
/// again, the leaves re-dial it and delivery across it resumes by itself.
#[test]
fn sigkill_of_the_hub() {
    let hub_addr = unused_addr();
    let mut hub = Broker::named_on("hub", &hub_addr, &[]);
    let a = leaf("leaf-a", &hub_addr, &[]);
    let b = leaf("leaf-b", &hub_addr, &[]);
    let mut at_a = subscriber(&a, "alerts");
    let mut at_b = subscriber(&b, "alerts");
    wait_interest_exactly(&a, "hub", 1);
    wait_interest_exactly(&b, "hub", 1);
    let mut p = a.connect();
    assert_eq!(p.publish("alerts", "\"before\""), 2, "local and the link");
    assert_eq!(at_a.expect_message("alerts"), "\"before\"");
    assert_eq!(at_b.expect_message("alerts"), "\"before\"");

    hub.kill();
    wait_link_down(&a, "hub");
    wait_link_down(&b, "hub");
    assert_eq!(
        p.publish("alerts", "\"alone\""),
        1,
        "only the local subscriber"
    );
    assert_eq!(at_a.expect_message("alerts"), "\"alone\"");
    at_b.ping();
    assert_serves_locally(&a, "local.a");
    assert_serves_locally(&b, "local.b");
    assert_nothing_circulates(&[&a, &b]);

    let hub = Broker::named_on("hub", &hub_addr, &[]);
    wait_interest_exactly(&hub, "leaf-a", 1);
    wait_interest_exactly(&hub, "leaf-b", 1);
    wait_interest_exactly(&a, "hub", 1);
    assert_eq!(p.publish("alerts", "\"after\""), 2);
    assert_eq!(at_a.expect_message("alerts"), "\"after\"");
    // The next message b sees is "after": "alone" was not stored and replayed.
    assert_eq!(at_b.expect_message("alerts"), "\"after\"");
    at_a.ping();
    at_b.ping();
    assert_nothing_circulates(&[&hub, &a, &b]);
}

/// A leaf dies: the hub withdraws what it learned from it (the other leaf's interest
/// from the hub drops to what is left), the hub and the other leaf keep serving and
/// delivering between themselves; the leaf restarted on its port links again and is
/// reached again.
#[test]
fn sigkill_of_a_leaf() {
    let hub = Broker::named("hub", &[]);
    let b_addr = unused_addr();
    let a = leaf("leaf-a", &hub.addr(), &[]);
    let mut b = leaf_on("leaf-b", &b_addr, &hub.addr());
    let mut at_hub = subscriber(&hub, "alerts");
    let mut at_a = subscriber(&a, "alerts");
    let mut at_b = subscriber(&b, "alerts");
    // a learns two entries from the hub: the hub's own and leaf-b's.
    wait_interest_exactly(&a, "hub", 2);
    wait_interest_exactly(&hub, "leaf-b", 1);
    let mut p = a.connect();
    assert_eq!(p.publish("alerts", "\"before\""), 2);
    for s in [&mut at_hub, &mut at_a, &mut at_b] {
        assert_eq!(s.expect_message("alerts"), "\"before\"");
    }

    b.kill();
    wait_link_down(&hub, "leaf-b");
    wait_interest_exactly(&a, "hub", 1);
    assert_eq!(p.publish("alerts", "\"without b\""), 2, "local and the hub");
    assert_eq!(at_a.expect_message("alerts"), "\"without b\"");
    assert_eq!(at_hub.expect_message("alerts"), "\"without b\"");
    assert_serves_locally(&hub, "local.hub");
    assert_serves_locally(&a, "local.a");
    assert_nothing_circulates(&[&hub, &a]);

    let b = leaf_on("leaf-b", &b_addr, &hub.addr());
    let mut at_b = subscriber(&b, "alerts");
    wait_interest_exactly(&a, "hub", 2);
    assert_eq!(p.publish("alerts", "\"after\""), 2);
    for s in [&mut at_hub, &mut at_a, &mut at_b] {
        assert_eq!(s.expect_message("alerts"), "\"after\"");
        s.ping();
    }
    assert_nothing_circulates(&[&hub, &a, &b]);
}

// ---------------------------------------------------------------------------------
// A peer hangs: SIGSTOP, then SIGCONT.
// ---------------------------------------------------------------------------------

/// The hub hangs. Its sockets stay open and the kernel keeps taking data for it, so
/// the leaves' links stay up: they keep counting it as a receiver and keep serving
/// their own clients (publish, subscribe, PING), and nothing circulates. Once it
/// resumes, it handles what waited in its socket buffers: the messages published
/// meanwhile reach the other leaf once each and in order, and a subscription made
/// during the hang is announced across.
#[test]
fn sigstop_of_the_hub() {
    let hub = Broker::named("hub", &[]);
    let a = leaf("leaf-a", &hub.addr(), &[]);
    let b = leaf("leaf-b", &hub.addr(), &[]);
    let mut at_a = subscriber(&a, "alerts");
    let mut at_b = subscriber(&b, "alerts");
    wait_interest_exactly(&a, "hub", 1);
    wait_interest_exactly(&b, "hub", 1);
    let mut p = a.connect();

    let frozen = hub.freeze();
    let mut during = Vec::new();
    for i in 0..20 {
        // Small messages: nothing fills the socket buffers, so the link stays up
        // (nothing tells a leaf that its hub hangs) and carries each one.
        assert_eq!(p.publish("alerts", &i.to_string()), 2);
        assert_eq!(at_a.expect_message("alerts"), i.to_string());
        during.push(i.to_string());
    }
    let mut late = subscriber(&b, "late");
    at_b.ping();
    assert_serves_locally(&a, "local.a");
    assert_serves_locally(&b, "local.b");
    assert_nothing_circulates(&[&a, &b]);

    frozen.thaw();
    // b's subscription of "late", made while the hub hung, reaches a through it.
    wait_interest_exactly(&a, "hub", 2);
    assert_eq!(p.publish("alerts", "\"end\""), 2);
    assert_eq!(at_a.expect_message("alerts"), "\"end\"");
    assert_eq!(read_until_end(&mut at_b), during, "once each, in order");
    assert_eq!(p.publish("late", "\"late\""), 1, "the link");
    assert_eq!(late.expect_message("late"), "\"late\"");
    at_b.ping();
    late.ping();
    assert_nothing_circulates(&[&hub, &a, &b]);
}

/// A leaf hangs: the hub and the other leaf keep serving and delivering between
/// themselves; the hub keeps routing to the hung leaf's socket. Once it resumes it
/// delivers what waited, once each and in order, and delivery works both ways again.
#[test]
fn sigstop_of_a_leaf() {
    let hub = Broker::named("hub", &[]);
    let a = leaf("leaf-a", &hub.addr(), &[]);
    let b = leaf("leaf-b", &hub.addr(), &[]);
    let mut at_hub = subscriber(&hub, "alerts");
    let mut at_a = subscriber(&a, "alerts");
    let mut at_b = subscriber(&b, "alerts");
    wait_interest_exactly(&a, "hub", 2);
    wait_interest_exactly(&b, "hub", 2);
    let mut p = a.connect();

    let frozen = b.freeze();
    let mut during = Vec::new();
    for i in 0..20 {
        assert_eq!(p.publish("alerts", &i.to_string()), 2);
        assert_eq!(at_a.expect_message("alerts"), i.to_string());
        assert_eq!(at_hub.expect_message("alerts"), i.to_string());
        during.push(i.to_string());
    }
    assert_serves_locally(&hub, "local.hub");
    assert_serves_locally(&a, "local.a");
    assert_nothing_circulates(&[&hub, &a]);

    frozen.thaw();
    assert_eq!(p.publish("alerts", "\"end\""), 2);
    assert_eq!(read_until_end(&mut at_b), during, "once each, in order");
    assert_eq!(at_a.expect_message("alerts"), "\"end\"");
    assert_eq!(at_hub.expect_message("alerts"), "\"end\"");
    // And from the resumed leaf outwards.
    let mut q = b.connect();
    assert_eq!(q.publish("alerts", "\"from b\""), 2);
    for s in [&mut at_hub, &mut at_a, &mut at_b] {
        assert_eq!(s.expect_message("alerts"), "\"from b\"");
        s.ping();
    }
    assert_nothing_circulates(&[&hub, &a, &b]);
}

/// Publishes 1 MiB batches of 16 KiB messages on `channel` from `p` (a client of
/// `sender`, whose link to a frozen peer carries them) until `sender` logs that it
/// closed that link as a slow consumer. After each batch `sender` must still answer
/// PING and hold at most `--max-pending` plus [`MEMORY_SLACK`]. Returns how many
/// messages were published; message `i` is `{"i":i,"pad":"..."}`.
fn flood_until_the_link_is_cut(sender: &Broker, p: &mut Conn, channel: &str) -> u64 {
    let pad = "x".repeat(FLOOD_PAD);
    let mut next = 0;
    for _ in 0..FLOOD_MAX_BATCHES {
        let mut batch = String::new();
        for _ in 0..FLOOD_BATCH {
            let message = format!(r#"{{"i":{next},"pad":"{pad}"}}"#);
            batch.push_str(&publish_frame(channel, &message, false));
            batch.push('\n');
            next += 1;
        }
        p.send_raw(batch.as_bytes());
        p.ping();
        let memory = sender.stats()["memory"].clone();
        let used = memory["used"].as_u64().expect("memory.used");
        assert!(
            used <= SMALL_MAX_PENDING + MEMORY_SLACK,
            "a frozen peer made {} hold {used} bytes after {next} messages: {memory}",
            sender.stats()["server"]
        );
        if sender.log().contains(SLOW_LINK) {
            return next;
        }
    }
    panic!("the link to the frozen peer was never cut after {next} messages");
}

/// The numbers `i` of the flood messages in `got`: each must be a flood message.
fn flood_numbers(got: &[String]) -> Vec<u64> {
    got.iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m).expect("a flood message");
            v["i"]
                .as_u64()
                .unwrap_or_else(|| panic!("not a flood message: {m:.80}"))
        })
        .collect()
}

/// Checks that `numbers` is strictly increasing and below `sent`: no message twice,
/// none out of order, none invented.
fn assert_once_in_order(numbers: &[u64], sent: u64) {
    for w in numbers.windows(2) {
        assert!(w[0] < w[1], "message {} arrived after {}", w[1], w[0]);
    }
    if let Some(&last) = numbers.last() {
        assert!(last < sent, "message {last} was never sent");
    }
}

/// The hub hangs while a leaf floods it with messages it wants: the leaf's link to it
/// fills the socket buffers, passes `--max-pending` and is closed as a slow link; all
/// the while the leaf answers its own clients and its memory stays bounded. Once the
/// hub resumes (with the cut link and the leaf's new connection both waiting in its
/// socket queues), the leaf links again by itself, and delivery resumes: what crossed
/// before the cut arrives once each and in order, then the new messages.
#[test]
fn sigstop_of_the_hub_under_load() {
    let max_pending = SMALL_MAX_PENDING.to_string();
    let hub = Broker::named("hub", &[]);
    // At debug level the leaf logs each dial.
    let a = leaf(
        "leaf-a",
        &hub.addr(),
        &["--max-pending", &max_pending, "--log-level", "debug"],
    );
    let b = leaf("leaf-b", &hub.addr(), &[]);
    let mut at_b = subscriber(&b, "bulk");
    wait_interest_exactly(&a, "hub", 1);
    let mut p = a.connect();

    let frozen = hub.freeze();
    let sent = flood_until_the_link_is_cut(&a, &mut p, "bulk");
    wait_link_down(&a, "hub");
    // The hung hub takes nothing, so the leaf gives up on the cut link after its close
    // grace and dials again: the kernel completes the connection for the hung hub,
    // which finds the new link's HELLO waiting beside the old link when it resumes.
    wait_until("the leaf dials the hung hub again", || {
        a.log().matches("dialling upstream").count() >= 2
    });
    assert_serves_locally(&a, "local.a");
    assert_serves_locally(&b, "local.b");
    assert_nothing_circulates(&[&a, &b]);

    frozen.thaw();
    wait_interest_exactly(&a, "hub", 1);
    assert_eq!(p.publish("bulk", "\"end\""), 1, "the link");
    let got = read_until_end(&mut at_b);
    assert_once_in_order(&flood_numbers(&got), sent);
    at_b.ping();
    assert_nothing_circulates(&[&hub, &a, &b]);
}

/// A leaf hangs while the hub floods it with messages it wants: the hub closes its
/// link to the leaf as a slow link, keeps serving, and its memory stays bounded. Once
/// the leaf resumes it finds the link gone, dials again, re-announces its interest,
/// and delivery resumes: what crossed before the cut arrives once each and in order,
/// then the new messages.
#[test]
fn sigstop_of_a_leaf_under_load() {
    let max_pending = SMALL_MAX_PENDING.to_string();
    let hub = Broker::named("hub", &["--max-pending", &max_pending]);
    let a = leaf("leaf-a", &hub.addr(), &[]);
    let b = leaf("leaf-b", &hub.addr(), &[]);
    let mut at_b = subscriber(&b, "bulk");
    wait_interest_exactly(&hub, "leaf-b", 1);
    let mut p = hub.connect();

    let frozen = b.freeze();
    let sent = flood_until_the_link_is_cut(&hub, &mut p, "bulk");
    wait_link_down(&hub, "leaf-b");
    assert_serves_locally(&hub, "local.hub");
    assert_serves_locally(&a, "local.a");
    assert_nothing_circulates(&[&hub, &a]);

    frozen.thaw();
    wait_interest_exactly(&hub, "leaf-b", 1);
    assert_eq!(p.publish("bulk", "\"end\""), 1, "the link");
    let got = read_until_end(&mut at_b);
    assert_once_in_order(&flood_numbers(&got), sent);
    at_b.ping();
    assert_nothing_circulates(&[&hub, &a, &b]);
}

// ---------------------------------------------------------------------------------
// A link cut in the middle of a frame.
// ---------------------------------------------------------------------------------

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
