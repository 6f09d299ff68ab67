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

use common::faults::*;
use common::federation::{read_until_end, subscriber};
use common::{publish_frame, unused_addr, wait_until, Broker, Conn};
use serde_json::Value;

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
