//! Fault-test helpers: leaves on a hub, waits for links to go down or interest to
//! settle, the traffic counters of every link, and the checks that nothing circulates
//! and a broker still serves its own clients. Every wait is a bounded poll of `STATS`.

use serde_json::{json, Value};

use super::federation::subscriber;
use super::{publish_frame, wait_until, Broker};

/// The leaves' `--link-backoff-max-ms`: a lost link is dialled again at least every
/// 200 ms, so a returning peer is found quickly (the tests never time it).
pub const BACKOFF_CAP_MS: &str = "200";

/// `--max-pending` of the broker that sends to a frozen peer in the flood tests: small,
/// so its link to the frozen peer passes it after a few MiB.
pub const SMALL_MAX_PENDING: u64 = 1 << 20;

/// Slack over `--max-pending` allowed in the memory a broker holds while it floods a
/// frozen peer: the frame that crossed the limit, one turn's read budget of input, and
/// the replies queued to its clients.
pub const MEMORY_SLACK: u64 = 1 << 20;

/// The padding of each flood message: 16 KiB, 64 of them to a 1 MiB batch.
pub const FLOOD_PAD: usize = 16 * 1024;
/// Messages per flood batch.
pub const FLOOD_BATCH: u64 = 64;
/// Flood batches (1 MiB each) sent at most before the test gives up waiting for the
/// link to the frozen peer to be cut: far more than loopback socket buffers hold.
pub const FLOOD_MAX_BATCHES: u64 = 512;

/// The log line of a broker closing a link whose unsent output passed `--max-pending`.
pub const SLOW_LINK: &str = "federation link is a slow consumer";

/// A leaf named `name` on a free port, linked to `hub`, re-dialling fast.
pub fn leaf(name: &str, hub: &str, extra: &[&str]) -> Broker {
    let mut args = vec!["--upstream", hub, "--link-backoff-max-ms", BACKOFF_CAP_MS];
    args.extend_from_slice(extra);
    Broker::named(name, &args)
}

/// A leaf named `name` listening on `listen` (so it can be restarted there).
pub fn leaf_on(name: &str, listen: &str, hub: &str) -> Broker {
    Broker::named_on(
        name,
        listen,
        &["--upstream", hub, "--link-backoff-max-ms", BACKOFF_CAP_MS],
    )
}

/// Waits until `node` has no link to `peer` (it saw the link go down).
pub fn wait_link_down(node: &Broker, peer: &str) {
    wait_until(&format!("link to {peer} down"), || {
        node.link(peer).is_none()
    });
}

/// Waits until `node`'s link to `peer` is up with exactly `n` interest entries learned
/// from it (neither a missing re-announcement nor a stale one left behind).
pub fn wait_interest_exactly(node: &Broker, peer: &str, n: u64) {
    wait_until(&format!("{peer} -> interest == {n}"), || {
        node.link(peer)
            .is_some_and(|l| l["interest_in"].as_u64() == Some(n))
    });
}

/// The names of the peers `node` has links to now, sorted.
pub fn peers(node: &Broker) -> Vec<String> {
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
pub fn traffic(node: &Broker) -> Value {
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
pub fn wait_links_drained(nodes: &[&Broker]) {
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
pub fn assert_nothing_circulates(nodes: &[&Broker]) {
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
pub fn assert_serves_locally(node: &Broker, channel: &str) {
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
