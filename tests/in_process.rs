//! Brokers running inside the test process (`pubsub::broker::spawn`), stopped through
//! their `Control` rather than a signal: the library installs no process-wide handler,
//! so several brokers share one process, and a test can drive a broker's whole life.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use common::Conn;
use pubsub::broker::{spawn, Config, Running};

fn start(args: &[&str]) -> Running {
    let mut argv = vec!["broker", "--listen", "127.0.0.1:0", "--log-level", "error"];
    argv.extend_from_slice(args);
    spawn(Config::parse_from(argv)).expect("broker starts in process")
}

/// Polls `STATS` until `cond` holds (bounded; the deadline only fails the test).
fn wait_stats(addr: std::net::SocketAddr, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = Conn::connect(addr).request(r#"{"command":"STATS"}"#);
        if cond(&v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_brokers_in_one_process_link_and_stop_gracefully() {
    let hub = start(&["--name", "hub"]);
    let hub_addr = hub.addr.to_string();
    let leaf = start(&["--name", "leaf", "--upstream", &hub_addr]);
    let mut sub = Conn::connect(leaf.addr);
    sub.subscribe("news");
    wait_stats(hub.addr, "the leaf's interest at the hub", |v| {
        v["links"][0]["interest_in"].as_u64() == Some(1)
    });
    let mut p = Conn::connect(hub.addr);
    assert_eq!(p.publish("news", "\"in process\""), 1);
    assert_eq!(sub.expect_message("news"), "\"in process\"");
    // Stopping one broker leaves the other serving.
    leaf.stop().expect("leaf stops cleanly");
    sub.expect_eof();
    p.ping();
    hub.stop().expect("hub stops cleanly");
}

#[test]
fn a_stop_flushes_what_subscribers_are_owed() {
    let broker = start(&[]);
    let mut sub = Conn::connect(broker.addr);
    sub.subscribe("bulk");
    let mut p = Conn::connect(broker.addr);
    for i in 0..1000 {
        p.send(&format!(
            r#"{{"command":"PUBLISH","channel":"bulk","message":{i},"ack":false}}"#
        ));
    }
    p.ping(); // every publish handled: all 1000 are queued or sent
    broker.stop().expect("stops cleanly");
    for i in 0..1000 {
        assert_eq!(sub.expect_message("bulk"), i.to_string());
    }
    sub.expect_eof();
}
