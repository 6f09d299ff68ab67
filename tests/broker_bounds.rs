//! The broker's bounds over whole connections: the broker-wide memory limit, stalled
//! frames, connections that never authenticate, and sockets that stop taking output.
//! Every wait is on an observable event (an `ERROR`, end of stream, a `STATS`
//! counter), bounded by a deadline that only fails the test.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Broker, Conn};
use serde_json::Value;

/// Polls `STATS` until `cond` holds; returns the `STATS` that satisfied it.
fn wait_stats(b: &Broker, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    common::wait_until(what, || {
        last = b.stats();
        cond(&last)
    });
    last
}

#[test]
fn unfinished_max_size_frames_are_shed_at_max_memory() {
    const LIMIT: u64 = 1 << 20;
    const PART: usize = 60_000;
    const CLIENTS: usize = 40;
    let b = Broker::start(&["--max-frame", "65536", "--max-memory", &LIMIT.to_string()]);
    let start = format!(
        r#"{{"command":"PUBLISH","channel":"x","message":"{}"#,
        "y".repeat(PART)
    );
    let mut conns: Vec<Conn> = (0..CLIENTS).map(|_| b.connect()).collect();
    for c in &mut conns {
        c.send_raw(&start.as_bytes()[..PART]); // most of a frame, never finished
    }
    // Holding all 40 would take 2.4 MB; at most LIMIT / PART may stay.
    let must_shed = (CLIENTS - LIMIT as usize / PART) as u64;
    let v = wait_stats(&b, "the memory limit to shed", |v| {
        v["shed"]["memory"].as_u64() >= Some(must_shed)
            && v["memory"]["used"].as_u64() <= Some(LIMIT)
    });
    assert_eq!(v["memory"]["limit"], LIMIT, "{v}");
    assert!(v["errors"]["stale"].as_u64() >= Some(must_shed), "{v}");
    // Each connection either was shed (told `stale`, then closed) or finishes its frame
    // and is served; the broker keeps serving new clients either way.
    let rest = format!("{}\"}}\n{{\"command\":\"PING\"}}\n", &start[PART..]);
    let (mut shed, mut served) = (0u64, 0u64);
    for c in &mut conns {
        let _ = std::io::Write::write_all(&mut c.stream(), rest.as_bytes());
        let mut told = false;
        loop {
            match c.recv_line_or_end() {
                Some(l) if l.contains("\"PONG\"") => {
                    served += 1;
                    break;
                }
                Some(l) => told |= l.contains("\"stale\""),
                None => {
                    assert!(told, "a connection closed without being told why");
                    shed += 1;
                    break;
                }
            }
        }
    }
    assert!(shed >= must_shed, "{shed} shed, {served} served");
    assert_eq!(shed + served, CLIENTS as u64);
    b.connect().ping();
}

#[test]
fn a_frame_that_stalls_is_stale_after_frame_timeout() {
    let b = Broker::start(&["--frame-timeout", "300ms"]);
    let mut c = b.connect();
    c.send_raw(br#"{"command":"PUBLISH","channel":"x","#);
    let e = c.expect_error("stale");
    assert!(e["error"].as_str().unwrap_or("").contains("0.3 s"), "{e}");
    c.expect_eof();
    assert_eq!(b.stats()["shed"]["frame_timeout"], 1);
}

#[test]
fn a_connection_that_never_authenticates_is_closed_after_auth_timeout() {
    let b = Broker::start(&["--token", "T", "--auth-timeout", "300ms"]);
    let mut ok = b.connect();
    ok.hello(r#","token":"T""#);
    let mut silent = b.connect();
    silent.expect_error("unauthorized");
    silent.expect_eof();
    // The one that authenticated long before the timeout is unaffected.
    ok.ping();
}

#[test]
fn a_socket_that_takes_no_output_is_closed_after_write_deadline() {
    let b = Broker::start(&["--write-deadline", "500ms"]);
    let mut sub = b.connect();
    sub.subscribe("firehose");
    let mut p = b.connect();
    // Far below --max-pending (64 MiB), far above what loopback socket buffers hold.
    let payload = format!("\"{}\"", "z".repeat(64 * 1024));
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.stats()["shed"]["write_deadline"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the stalled reader was never closed"
        );
        for _ in 0..16 {
            p.send(&format!(
                r#"{{"command":"PUBLISH","channel":"firehose","message":{payload},"ack":false}}"#
            ));
        }
        p.ping();
        std::thread::sleep(Duration::from_millis(50));
    }
    // What it is owed arrives whole, then the reason, then the end.
    let mut rest = Vec::new();
    sub.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut s = sub.stream();
    s.read_to_end(&mut rest).expect("read to the end");
    let text = String::from_utf8(rest).expect("utf-8");
    let last = text.lines().last().expect("some output");
    assert!(last.contains("\"slow_consumer\""), "{last}");
    for line in text.lines() {
        serde_json::from_str::<Value>(line).expect("whole frames only");
    }
}

#[test]
fn replies_count_toward_max_pending() {
    // A client that sends requests and never reads: its replies pile up like messages
    // would, and it is a slow consumer once they pass --max-pending.
    let b = Broker::start(&["--max-pending", "1024"]);
    let c = b.connect();
    let mut w = c.stream().try_clone().expect("clone");
    let id = "i".repeat(200);
    let ping = format!("{{\"command\":\"PING\",\"id\":\"{id}\"}}\n").repeat(1000);
    let writer = std::thread::spawn(move || {
        // At most ~20 MB of replies owed; stops at the first refused write.
        for _ in 0..100 {
            if std::io::Write::write_all(&mut w, ping.as_bytes()).is_err() {
                return;
            }
        }
    });
    wait_stats(&b, "the reader of nothing to be a slow consumer", |v| {
        v["errors"]["slow_consumer"] == 1
    });
    drop(c);
    writer.join().expect("writer");
    b.connect().ping();
}

#[test]
fn the_largest_holder_is_shed_first() {
    const LIMIT: usize = 1 << 20;
    let b = Broker::start(&["--max-frame", "2097152", "--max-memory", &LIMIT.to_string()]);
    let head = r#"{"command":"PUBLISH","channel":"x","message":""#;
    let mut big = b.connect();
    let big_part = 900_000;
    let mut frame = head.to_string();
    frame.push_str(&"y".repeat(big_part - head.len()));
    big.send_raw(frame.as_bytes());
    wait_stats(&b, "the big frame held", |v| {
        v["memory"]["input"].as_u64() >= Some(big_part as u64)
    });
    // Small holders push the total past the limit: the big one goes, they stay.
    let small_part = 30_000;
    let mut small: Vec<Conn> = (0..10).map(|_| b.connect()).collect();
    let mut part = head.to_string();
    part.push_str(&"z".repeat(small_part - head.len()));
    for c in &mut small {
        c.send_raw(part.as_bytes());
    }
    big.expect_error("stale");
    for c in &mut small {
        c.send("\"}");
        assert_eq!(c.expect("PUBLISHED")["receivers"], 0);
    }
    assert_eq!(b.stats()["shed"]["memory"], 1);
}
