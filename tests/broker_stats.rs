//! The `STATS` extension (protocol.md, "Extension: STATS"), against the real broker:
//! after a known sequence of connections, commands and errors, every broker-wide
//! counter has exactly the value that sequence implies, so removing any one of the
//! broker's counter updates fails this test.

mod common;

use common::{publish_frame, wait_until, Broker, Conn};
use serde_json::{json, Value};

/// A padded PING of exactly `len` bytes (newline excluded).
fn ping_of_len(len: usize) -> String {
    let mut frame = r#"{"command":"PING","id":"pad"}"#.to_owned();
    frame.extend(std::iter::repeat_n(' ', len - frame.len()));
    frame
}

/// The observer: a connection that only asks for `STATS`, counting its requests.
struct Observer {
    conn: Conn,
    requests: u64,
}

impl Observer {
    fn stats(&mut self) -> Value {
        self.requests += 1;
        self.conn.request(r#"{"command":"STATS","id":"obs"}"#)
    }
}

#[test]
fn every_broker_wide_counter_adds_up_after_known_work() {
    const MAX_FRAME: usize = 80_000;
    let broker = Broker::start(&[
        "--max-memory",
        "16777216",
        "--max-connections",
        "5",
        "--max-frame",
        &MAX_FRAME.to_string(),
        "--name",
        "counted",
    ]);
    let mut obs = Observer {
        conn: broker.connect(),
        requests: 0,
    };
    let fresh = obs.stats();
    assert_eq!(fresh["connections"], 1, "{fresh}");
    assert_eq!(fresh["accepted"], 1, "{fresh}");
    assert_eq!(fresh["frames_in"], 1, "{fresh}");

    // Subscribers: a holds `x` and `y.*` (a repeated SUBSCRIBE inserts nothing); b
    // subscribes, unsubscribes and subscribes `x` again, and holds `only.b` and `w.*`,
    // which leave the router when b leaves.
    let mut a = broker.connect();
    a.subscribe("x");
    a.subscribe("y.*");
    a.subscribe("x");
    let mut b = broker.connect();
    b.subscribe("x");
    b.unsubscribe("x");
    b.subscribe("x");
    b.subscribe("only.b");
    b.subscribe("w.*");

    let mut p = broker.connect();
    let mut e = broker.connect();
    p.ping(); // p and e are admitted: five connections, the limit
    e.ping();
    // A sixth is refused at the connection limit.
    let mut d = broker.connect();
    d.expect_error("limit");
    d.expect_eof();
    d.shutdown_write();

    p.hello("");
    assert_eq!(p.publish("x", "1"), 2);
    assert_eq!(p.publish("y.z", "2"), 1);
    assert_eq!(p.publish("none", "3"), 0);
    // A frame longer than one 64 KiB read: it is completed in the connection's buffer.
    let big = format!("\"{}\"", "b".repeat(70_000));
    assert_eq!(p.publish("none", &big), 0);
    p.send(&publish_frame("x", "4", false));
    p.send_raw(b"\n \n"); // blank lines: bytes, not frames
    for (frame, code) in [
        ("not json", "bad_json"),
        ("[]", "bad_frame"),
        (r#"{"command":"NOPE"}"#, "unknown_command"),
        (r#"{"command":"SUBSCRIBE"}"#, "bad_field"),
        (
            r#"{"command":"PUBLISH","channel":"a.*","message":1}"#,
            "bad_channel",
        ),
    ] {
        p.send(frame);
        p.expect_error(code);
    }
    p.ping();
    assert_eq!(a.expect_message("x"), "1");
    assert_eq!(a.expect_message("y.z"), "2");
    assert_eq!(a.expect_message("x"), "4");
    assert_eq!(b.expect_message("x"), "1");
    assert_eq!(b.expect_message("x"), "4");

    // A frame one byte over --max-frame closes e with frame_too_large.
    e.send(&ping_of_len(MAX_FRAME + 1));
    e.expect_error("frame_too_large");
    e.expect_eof();
    e.shutdown_write();
    // b and p leave by half-closing: the broker closes them once their replies are out.
    b.shutdown_write();
    b.expect_eof();
    p.shutdown_write();
    p.expect_eof();

    // d and e are closed when the broker reads their EOF, which nothing announces.
    wait_until("four connections closed", || obs.stats()["closed"] == 4);
    let sent: u64 = [&obs.conn, &a, &b, &p, &d, &e]
        .iter()
        .map(|c| c.bytes_sent())
        .sum::<u64>()
        + r#"{"command":"STATS","id":"obs"}"#.len() as u64
        + 1;
    let received: u64 = [&obs.conn, &a, &b, &p, &d, &e]
        .iter()
        .map(|c| c.bytes_received())
        .sum();
    let polls = obs.requests;
    let s = obs.stats();

    // a: 3 frames, b: 5, p: HELLO, 5 acknowledged PUBLISH, 1 unacknowledged, 5 bad
    // frames, 2 PINGs; e: 1 PING (its too-long line is no frame); plus every STATS.
    let frames_in = 3 + 5 + (1 + 4 + 1 + 5 + 2) + 1 + polls + 1;
    let expected = json!({
        "command": "STATS",
        "server": "counted",
        "version": fresh["version"],
        "connections": 2,
        "accepted": 6,
        "refused": 1,
        "closed": 4,
        "frames_in": frames_in,
        "published": 5,
        "delivered": 5,
        "bytes_in": sent,
        "bytes_out": received,
        "errors": {
            "bad_json": 1,
            "bad_frame": 1,
            "unknown_command": 1,
            "bad_field": 1,
            "bad_channel": 1,
            "frame_too_large": 1,
            "unauthorized": 0,
            "slow_consumer": 0,
            "limit": 1,
            "stale": 0,
            "link_refused": 0,
        },
        "router": {
            "exact_channels": 1,
            "wildcard_subscriptions": 1,
            "inserts": 6,
            "removes": 4,
            "lookups": 5,
            "matches": 5,
        },
        "links": [],
        "duplicates_dropped": 0,
        "memory": { "used": 0, "input": 0, "output": 0, "limit": 16777216 },
        "shed": { "memory": 0, "frame_timeout": 0, "auth_timeout": 0, "write_deadline": 0 },
        "id": "obs",
    });
    assert_eq!(s, expected);
}

/// protocol.md, Frames: "The reply to that command carries the same `id`, byte for
/// byte (`null`, objects and 30-digit numbers included)." STATS re-encoded the id
/// through `serde_json::Value` (a 30-digit number came back as `1.2345678901234568e+29`,
/// `"\u00e9"` as `"é"`) until the id was echoed raw.
#[test]
fn stats_echoes_the_id_byte_for_byte() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    for id in ["123456789012345678901234567890", r#""\u00e9""#, "1.0"] {
        c.send(&format!(r#"{{"command":"STATS","id":{id}}}"#));
        let line = c.recv_line();
        assert_eq!(
            common::raw_field(&line, "id").as_deref(),
            Some(id),
            "{line}"
        );
    }
}
