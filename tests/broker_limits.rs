//! The broker's limits and lifecycle, against the real binary: token authentication,
//! `--max-frame` (the default 1 MiB refused promptly without buffering, and an exact
//! boundary), `--max-subscriptions`, `--max-connections`, slow consumers (cut off while
//! a reading subscriber gets everything and the broker's memory stays bounded), and
//! graceful shutdown on SIGTERM.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use common::{publish_frame, Broker, Ending, TIMEOUT};
use serde_json::Value;

/// Upper bound on the broker's resident memory while a slow consumer is being cut off.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// Pads a PING frame with trailing spaces to exactly `len` bytes (newline excluded).
fn ping_of_len(len: usize) -> String {
    let mut frame = r#"{"command":"PING","id":"pad"}"#.to_owned();
    assert!(frame.len() <= len);
    frame.extend(std::iter::repeat_n(' ', len - frame.len()));
    frame
}

/// Checks a connection is refused with `unauthorized` after sending `frame` first.
fn assert_unauthorized(broker: &Broker, frame: &str) {
    let mut c = broker.connect();
    c.send(frame);
    c.expect_error("unauthorized");
    c.expect_eof();
}

#[test]
fn token_auth_refuses_anything_but_hello_with_the_token() {
    let broker = Broker::start(&["--token", "s3cret"]);
    for first in [
        r#"{"command":"PING"}"#,
        r#"{"command":"SUBSCRIBE","channel":"a"}"#,
        r#"{"command":"PUBLISH","channel":"a","message":1}"#,
        r#"{"command":"HELLO"}"#,
        r#"{"command":"HELLO","token":null}"#,
        r#"{"command":"HELLO","token":"wrong"}"#,
        r#"{"command":"HELLO","token":"S3CRET"}"#,
        r#"{"command":"HELLO","token":"s3cret "}"#,
        r#"{"command":"HELLO","token":""}"#,
        r#"{"command":"HELLO","name":"s3cret"}"#,
        r#"{"command":"NOPE","token":"s3cret"}"#,
        r#"{"command":"PING","token":"s3cret"}"#,
        "not json",
        "[]",
    ] {
        assert_unauthorized(&broker, first);
    }
    // Commands pipelined after a refused first frame are not executed.
    let mut spy = broker.connect();
    spy.hello(r#","token":"s3cret""#);
    spy.subscribe("secret.news");
    let mut intruder = broker.connect();
    intruder.send_raw(
        b"{\"command\":\"PING\"}\n{\"command\":\"HELLO\",\"token\":\"s3cret\"}\n{\"command\":\"PUBLISH\",\"channel\":\"secret.news\",\"message\":1}\n",
    );
    intruder.expect_error("unauthorized");
    intruder.expect_eof();
    spy.ping();
}

#[test]
fn token_auth_with_the_right_token_works() {
    let broker = Broker::start(&["--token", "s3cret"]);
    let mut sub = broker.connect();
    let w = sub.hello(r#","token":"s3cret","name":"sub""#);
    assert!(w["client_id"].is_u64(), "{w}");
    sub.subscribe("t");
    let mut publisher = broker.connect();
    // The token is a JSON string: an escaped spelling is the same token.
    publisher.send(r#"{"command":"hello","token":"s3\u0063ret","id":1}"#);
    assert_eq!(publisher.expect("WELCOME")["id"], 1);
    assert_eq!(publisher.publish("t", "42"), 1);
    assert_eq!(sub.expect_message("t"), "42");
    // Errors after authentication are the ordinary, non-fatal ones.
    publisher.send("not json");
    publisher.expect_error("bad_json");
    publisher.ping();
}

#[test]
fn unauthorized_error_echoes_the_hello_id() {
    let broker = Broker::start(&["--token", "s3cret"]);
    let mut c = broker.connect();
    c.send(r#"{"command":"HELLO","token":"wrong","id":"login-1"}"#);
    let v = c.expect_error("unauthorized");
    assert_eq!(
        v["id"], "login-1",
        "the id of a readable frame is echoed: {v}"
    );
    c.expect_eof();
}

#[test]
fn two_mib_line_without_newline_is_refused_promptly() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let mut writer = c.stream().try_clone().expect("clone socket");
    let sender = thread::spawn(move || {
        let mut line = br#"{"command":"PUBLISH","channel":"a","message":""#.to_vec();
        line.resize(2 << 20, b'x');
        // The broker may close while this is still writing: the result does not matter.
        let _ = writer.write_all(&line);
        // No newline, and the socket stays open: only the size can end this frame.
    });
    c.expect_error("frame_too_large");
    c.expect_eof();
    sender.join().expect("writer thread panicked");
    // The broker itself is fine.
    broker.connect().ping();
}

#[test]
fn default_max_frame_boundary_is_one_mib() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.send(&ping_of_len(1 << 20));
    assert_eq!(c.expect("PONG")["id"], "pad");
    c.send(&ping_of_len((1 << 20) + 1));
    c.expect_error("frame_too_large");
    c.expect_eof();
}

#[test]
fn max_frame_exact_boundary() {
    // A 64-byte name (the longest allowed) makes WELCOME longer than 100 bytes:
    // outgoing frames are not limited by --max-frame.
    let name = "n".repeat(64);
    let broker = Broker::start(&["--max-frame", "100", "--name", &name]);
    let mut c = broker.connect();
    let welcome = c.hello("");
    assert_eq!(welcome["max_frame"], 100);
    assert_eq!(welcome["server"], name.as_str());
    assert!(welcome.to_string().len() > 100, "{welcome}");
    c.send(&ping_of_len(100));
    assert_eq!(c.expect("PONG")["id"], "pad");
    // The `\r` of `\r\n` is not part of the frame.
    c.send_raw(format!("{}\r\n", ping_of_len(100)).as_bytes());
    assert_eq!(c.expect("PONG")["id"], "pad");
    let mut publish = publish_frame("m", "1", true);
    publish.extend(std::iter::repeat_n(' ', 100 - publish.len()));
    c.send(&publish);
    assert_eq!(c.expect("PUBLISHED")["receivers"], 0);
    // One byte more is refused and closes the connection.
    c.send(&ping_of_len(101));
    c.expect_error("frame_too_large");
    c.expect_eof();

    // Without a newline, too, once more bytes than a frame could hold have arrived.
    let mut d = broker.connect();
    d.send_raw(&[b' '; 150]);
    d.expect_error("frame_too_large");
    d.expect_eof();

    // 101 bytes followed by `\r\n`: the frame is 101 bytes.
    let mut e = broker.connect();
    e.send_raw(format!("{}\r\n", ping_of_len(101)).as_bytes());
    e.expect_error("frame_too_large");
    e.expect_eof();
}

#[test]
fn max_subscriptions_is_a_non_fatal_limit() {
    let broker = Broker::start(&["--max-subscriptions", "3"]);
    let mut c = broker.connect();
    assert_eq!(c.subscribe("a"), 1);
    assert_eq!(c.subscribe("b.*"), 2);
    assert_eq!(c.subscribe("c.>"), 3);
    c.send(r#"{"command":"SUBSCRIBE","channel":"d","id":4}"#);
    let v = c.expect_error("limit");
    assert_eq!(v["id"], 4);
    c.ping();
    // Re-subscribing an existing channel is not a new subscription.
    assert_eq!(c.subscribe("a"), 3);
    // The refused subscription does not exist.
    let mut publisher = broker.connect();
    assert_eq!(publisher.publish("d", "1"), 0);
    assert_eq!(publisher.publish("a", "2"), 1);
    assert_eq!(c.expect_message("a"), "2");
    // Room again after an UNSUBSCRIBE.
    assert_eq!(c.unsubscribe("b.*"), 2);
    assert_eq!(c.subscribe("d"), 3);
    assert_eq!(publisher.publish("d", "3"), 1);
    assert_eq!(c.expect_message("d"), "3");
    // The limit is per connection.
    let mut other = broker.connect();
    for (i, ch) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(other.subscribe(ch), i as u64 + 1);
    }
}

#[test]
fn max_connections_refuses_the_third_connection() {
    const TRIES: usize = 1000;
    let broker = Broker::start(&["--max-connections", "2"]);
    let mut first = broker.connect();
    let mut second = broker.connect();
    first.ping();
    second.ping();
    let mut third = broker.connect();
    third.expect_error("limit");
    third.expect_eof();
    // The first two keep working.
    first.subscribe("c");
    assert_eq!(second.publish("c", "1"), 1);
    assert_eq!(first.expect_message("c"), "1");
    second.ping();
    // Below the limit again once one leaves: retry until the broker has noticed.
    drop(first);
    let admitted = (0..TRIES).find_map(|_| {
        let mut c = broker.connect();
        c.send(r#"{"command":"PING"}"#);
        let v = c.recv();
        match v["command"].as_str() {
            Some("PONG") => Some(c),
            _ => {
                assert_eq!(v["code"], "limit", "{v}");
                None
            }
        }
    });
    let mut fresh = admitted.expect("a connection slot never freed up");
    fresh.subscribe("c");
    assert_eq!(second.publish("c", "2"), 1);
    assert_eq!(fresh.expect_message("c"), "2");
}

#[test]
fn slow_consumer_is_cut_off_while_a_reader_gets_everything() {
    const N: usize = 20_000;
    const BATCH: usize = 250;
    let broker = Broker::start(&["--max-pending", "1048576"]);
    let mut slow = broker.connect();
    slow.subscribe("firehose");
    let mut reader = broker.connect();
    reader.subscribe("firehose");
    let mut publisher = broker.connect();
    let pad = "x".repeat(1000);
    let message = move |seq: usize| format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#);

    // The reader reports its progress so the publisher stays within two batches of it:
    // a reader that fell 1 MiB behind would rightly be a slow consumer too.
    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let expected = message.clone();
    let reader_thread = thread::spawn(move || {
        for seq in 0..N {
            assert_eq!(
                reader.expect_message("firehose"),
                expected(seq),
                "seq {seq}"
            );
            if (seq + 1) % BATCH == 0 {
                let _ = progress_tx.send(seq + 1);
            }
        }
        reader
    });

    let mut peak_rss = broker.rss_kib();
    let mut received = 0;
    for batch in 0..N / BATCH {
        while received + 2 * BATCH < (batch + 1) * BATCH {
            received = progress_rx
                .recv_timeout(TIMEOUT)
                .expect("the reading subscriber stopped receiving");
        }
        let mut frames = String::new();
        for seq in batch * BATCH..(batch + 1) * BATCH {
            frames.push_str(&publish_frame("firehose", &message(seq), false));
            frames.push('\n');
        }
        // A blocked publisher would fail here after TIMEOUT.
        publisher.send_raw(frames.as_bytes());
        peak_rss = peak_rss.max(broker.rss_kib());
    }
    publisher.ping();
    peak_rss = peak_rss.max(broker.rss_kib());

    let mut reader = reader_thread.join().expect("reading subscriber failed");
    reader.ping();
    // The slow consumer's subscription is gone; the reader's is not.
    assert_eq!(publisher.publish("firehose", r#""after""#), 1);
    assert_eq!(reader.expect_message("firehose"), r#""after""#);

    // The slow consumer got a prefix of the messages, whole frames only, then at most
    // an ERROR slow_consumer, then the end of the connection.
    let (lines, ending) = slow.read_until_closed();
    let mut next = 0;
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("slow consumer got a broken frame ({e}): {line:.80}"));
        match v["command"].as_str() {
            Some("MESSAGE") => {
                assert_eq!(v["message"]["seq"], next, "messages skipped or reordered");
                next += 1;
            }
            Some("ERROR") => {
                assert_eq!(v["code"], "slow_consumer", "{v}");
                assert_eq!(i, lines.len() - 1, "nothing follows the final ERROR");
            }
            _ => panic!("unexpected frame for the slow consumer: {line:.80}"),
        }
    }
    assert!(
        next < N,
        "the slow consumer received all {N} messages: it was never cut off"
    );
    assert!(matches!(ending, Ending::Eof | Ending::Reset));
    assert!(
        peak_rss < RSS_BOUND_KIB,
        "broker RSS reached {peak_rss} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
}

#[test]
fn sigterm_flushes_queued_output_and_exits_zero() {
    const N: usize = 5000;
    let mut broker = Broker::start(&[]);
    let mut sub = broker.connect();
    sub.subscribe("bye");
    let mut publisher = broker.connect();
    let pad = "z".repeat(1000);
    let mut frames = String::new();
    for seq in 0..N {
        frames.push_str(&publish_frame("bye", &format!("[{seq},\"{pad}\"]"), false));
        frames.push('\n');
    }
    publisher.send_raw(frames.as_bytes());
    // After the PONG every message is queued to the subscriber, which has read none.
    publisher.ping();
    let mut idle = broker.connect();
    idle.ping();

    broker.sigterm();
    for seq in 0..N {
        let m = sub.expect_message("bye");
        assert_eq!(m, format!("[{seq},\"{pad}\"]"), "message {seq}");
    }
    sub.expect_eof();
    publisher.expect_eof();
    idle.expect_eof();
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(0), "broker exit status: {status}");
    assert!(
        TcpStream::connect(broker.addr()).is_err(),
        "nothing listens after shutdown"
    );
}

/// Under a tiny fd limit (and a `--max-connections` above it) accept hits EMFILE: the
/// broker must answer the extra clients (ERROR limit, or at least a close) instead of
/// crashing, spinning or leaving them hanging, and keep serving the ones it holds.
#[test]
fn out_of_file_descriptors_refuses_new_clients_and_keeps_serving() {
    let broker = Broker::builder()
        .wrapper(&["prlimit", "--nofile=48:48", "--"])
        .args(&["--max-connections", "1000"])
        .start();
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let mut c = broker.connect();
        c.send(r#"{"command":"PING"}"#);
        match c.recv_line_or_end() {
            Some(line) if line.contains("\"PONG\"") => served.push(c),
            Some(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON frame");
                assert_eq!(v["code"], "limit", "unexpected answer {line}");
                refused += 1;
            }
            None => refused += 1,
        }
    }
    assert!(refused > 0, "no connection was refused under a 48-fd limit");
    assert!(
        served.len() >= 8,
        "only {} connections were served",
        served.len()
    );
    assert_eq!(served.len() + refused, 80);
    // Everyone admitted is still served, and a freed slot is usable again.
    for c in served.iter_mut() {
        c.ping();
    }
    served.pop();
    let mut again = None;
    for _ in 0..50 {
        let mut c = broker.connect();
        c.send(r#"{"command":"PING"}"#);
        if c.recv_line_or_end().is_some_and(|l| l.contains("\"PONG\"")) {
            again = Some(c);
            break;
        }
    }
    assert!(again.is_some(), "a freed descriptor was never reused");
}
