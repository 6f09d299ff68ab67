//! How a connection ends, against the real broker: a client's half-close (its
//! subscriptions end when the broker reads the EOF, its replies still arrive, a last
//! line without `\n` is a frame), the slow-consumer cut (whole frames, then the ERROR,
//! then EOF, the unsent rest dropped), and the broker waiting for the peer's EOF after
//! a fatal error so the ERROR is not destroyed by a reset. Each test is named after the
//! behaviour it pins, and fails when that behaviour is removed from the broker.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{publish_frame, Broker, Conn, Ending};
use serde_json::Value;

/// Queues `count` messages of `size` bytes on `channel` to its subscribers (a PING
/// barrier on the publisher proves they are queued).
fn backlog(publisher: &mut Conn, channel: &str, count: usize, size: usize) -> Vec<String> {
    let messages: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"n":{i},"pad":"{}"}}"#, "b".repeat(size)))
        .collect();
    let mut frames = String::new();
    for m in &messages {
        frames.push_str(&publish_frame(channel, m, false));
        frames.push('\n');
    }
    publisher.send_raw(frames.as_bytes());
    publisher.ping();
    messages
}

/// protocol.md, Semantics, "Half-close": subscriptions end when the broker reads the
/// client's end of stream, yet every reply to what it sent before still arrives.
#[test]
fn a_half_closed_subscriber_stops_receiving_but_gets_its_replies() {
    let broker = Broker::start(&[]);
    let mut sub = broker.connect();
    sub.subscribe("hc");
    let mut publisher = broker.connect();
    publisher.subscribe("witness");
    // A backlog the subscriber does not read yet: far more than the socket buffers
    // hold, so the broker keeps the half-closed connection open while it drains.
    let backlog = backlog(&mut publisher, "hc", 32, 512 * 1024);
    // Commands, then a last frame without its newline, then the half-close. The broker
    // handles that last frame when it reads the EOF, in the same step that ends the
    // subscriptions: its MESSAGE on `witness` tells the publisher the EOF was read.
    let mut batch = String::new();
    for i in 0..100 {
        batch.push_str(&format!("{{\"command\":\"PING\",\"id\":{i}}}\n"));
    }
    batch.push_str(r#"{"command":"PUBLISH","channel":"witness","message":"eof","id":"last"}"#);
    sub.send_raw(batch.as_bytes());
    sub.shutdown_write();
    assert_eq!(publisher.expect_message("witness"), "\"eof\"");
    assert_eq!(
        publisher.publish("hc", "\"after the half-close\""),
        0,
        "a half-closed subscriber is still counted as a receiver"
    );
    // Everything owed before the half-close arrives, then the end of the stream.
    for m in &backlog {
        assert_eq!(&sub.expect_message("hc"), m);
    }
    for i in 0..100 {
        assert_eq!(sub.expect("PONG")["id"], i);
    }
    let v = sub.expect("PUBLISHED");
    assert_eq!(
        (v["id"].as_str(), v["receivers"].as_u64()),
        (Some("last"), Some(1))
    );
    sub.expect_eof();
}

/// protocol.md, Transport and framing: "A line left without its `\n` when the client
/// half-closes its socket is handled as a final frame."
#[test]
fn a_last_line_without_newline_before_eof_is_a_frame() {
    let broker = Broker::start(&[]);
    // After complete frames (the tail waits in the connection's own buffer) ...
    let mut c = broker.connect();
    c.send_raw(b"{\"command\":\"PING\",\"id\":1}\n{\"command\":\"PING\",\"id\":\"last\"}");
    c.shutdown_write();
    assert_eq!(c.expect("PONG")["id"], 1);
    assert_eq!(c.expect("PONG")["id"], "last");
    c.expect_eof();
    // ... and as the only bytes ever sent, with a `\r` that is dropped as before `\n`.
    let mut d = broker.connect();
    d.send_raw(b"{\"command\":\"PING\",\"id\":\"only\"}\r");
    d.shutdown_write();
    assert_eq!(d.expect("PONG")["id"], "only");
    d.expect_eof();
}

/// protocol.md, Errors and Semantics, "Slow consumers": past `--max-pending` the broker
/// drops what it has not started sending, completes the frame in progress, sends
/// `ERROR slow_consumer` and closes: the client reads whole frames only, the ERROR
/// last, then EOF; messages the publisher was told were queued are lost.
#[test]
fn a_slow_consumer_gets_whole_frames_then_the_error_and_loses_the_unsent_rest() {
    const MAX_PUBLISHES: usize = 10_000;
    let broker = Broker::start(&["--max-pending", "1048576"]);
    let mut slow = broker.connect();
    slow.subscribe("big");
    let mut publisher = broker.connect();
    // Large messages (shared frames, 100 KB each) that do not divide the socket
    // buffers evenly, so the cut finds a frame half-written.
    let message = |n: usize| format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(100_003));
    let mut queued = 0;
    loop {
        assert!(
            queued < MAX_PUBLISHES,
            "the slow consumer was never cut off"
        );
        if publisher.publish("big", &message(queued)) == 0 {
            break; // this publish pushed it past --max-pending: it was cut off
        }
        queued += 1;
    }
    let (lines, ending) = slow.read_until_closed();
    assert_eq!(ending, Ending::Eof, "the broker reset instead of closing");
    let (last, messages) = lines.split_last().expect("at least the ERROR");
    for (n, line) in messages.iter().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("half a frame ({e}) at message {n}: {line:.80}"));
        assert_eq!(v["command"], "MESSAGE", "{line:.80}");
        assert_eq!(v["message"]["n"], n, "messages skipped or reordered");
    }
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not a whole frame ({e}): {last:.80}"));
    assert_eq!(v["command"], "ERROR", "{last:.80}");
    assert_eq!(v["code"], "slow_consumer", "{v}");
    // More than --max-pending was queued and unsent when it was cut: that is dropped.
    assert!(
        messages.len() + 5 <= queued,
        "{} of {queued} queued messages arrived: the unsent queue was not dropped",
        messages.len()
    );
}

/// architecture.md and protocol.md, Errors: a fatal error's ERROR is written, the
/// broker shuts its side and reads (and drops) the client's input until the client's
/// EOF before closing. Closing at once, with the client still sending, would reset the
/// connection and destroy the ERROR (and whatever else was still in flight).
#[test]
fn a_fatal_error_reaches_a_client_that_keeps_sending() {
    const BURST: usize = 16 << 20;
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.subscribe("fill");
    let mut publisher = broker.connect();
    // Output owed to `c` that it has not read: the ERROR queues behind it, so it is
    // still in flight when the broker has handed everything to the kernel.
    let backlog = backlog(&mut publisher, "fill", 16, 512 * 1024);
    let mut writer = c.stream().try_clone().expect("clone socket");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let sender = thread::spawn(move || {
        // A line over the default --max-frame (1 MiB), then a burst of input the
        // broker must read and drop, then the client's EOF.
        writer.write_all(&vec![b'x'; (1 << 20) + 100])?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < BURST && !stopped.load(Ordering::Relaxed) {
            writer.write_all(&chunk)?;
            sent += chunk.len();
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    for m in &backlog {
        assert_eq!(&c.expect_message("fill"), m);
    }
    c.expect_error("frame_too_large");
    let (rest, ending) = c.read_until_closed();
    assert_eq!((rest.len(), ending), (0, Ending::Eof), "{rest:?}");
    stop.store(true, Ordering::Relaxed);
    sender
        .join()
        .expect("writer thread panicked")
        .expect("the broker stopped reading the client's input before its EOF");
}
