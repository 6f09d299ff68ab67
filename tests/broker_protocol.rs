//! Protocol v1 on the wire, against the real broker: framing (newlines, `\r\n`, blank
//! lines, whitespace), JSON strictness, every reply shape, every non-fatal error code
//! and that the connection keeps working after it, `id` echo, case-insensitive command
//! names, `message` spliced byte for byte, and half-closed connections.

mod common;

use common::{json_str, publish_frame, raw_field, Broker, Conn};
use serde_json::{json, Value};

/// Checks the connection still answers commands after an error.
fn assert_alive(conn: &mut Conn) {
    conn.send(r#"{"command":"PING","id":"alive"}"#);
    let v = conn.expect("PONG");
    assert_eq!(v["id"], "alive");
}

/// Sends each frame, checks the reply is `ERROR code` and the connection still works.
fn assert_non_fatal(conn: &mut Conn, frames: &[&[u8]], code: &str) {
    for frame in frames {
        let mut bytes = frame.to_vec();
        bytes.push(b'\n');
        conn.send_raw(&bytes);
        let v = conn.recv();
        assert_eq!(
            (v["command"].as_str(), v["code"].as_str()),
            (Some("ERROR"), Some(code)),
            "frame {:?} got {v}",
            String::from_utf8_lossy(frame)
        );
        assert!(v["error"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
        assert_alive(conn);
    }
}

#[test]
fn welcome_has_server_version_max_frame_and_client_id() {
    let broker = Broker::start(&["--name", "test-broker"]);
    let mut a = broker.connect();
    let mut b = broker.connect();
    let wa = a.hello(r#","name":"alice""#);
    let wb = b.hello("");
    for w in [&wa, &wb] {
        assert_eq!(w["server"], "test-broker", "{w}");
        assert!(w["version"].as_str().is_some_and(|v| !v.is_empty()), "{w}");
        assert_eq!(w["max_frame"], 1 << 20, "default max frame is 1 MiB: {w}");
        assert!(w["client_id"].is_u64(), "{w}");
    }
    assert_ne!(wa["client_id"], wb["client_id"], "client ids are unique");
    assert!(wa.get("id").is_none(), "no id sent, none echoed: {wa}");
}

#[test]
fn reply_shapes() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();

    let v = c.request(r#"{"command":"SUBSCRIBE","channel":"news"}"#);
    assert_eq!(
        v,
        json!({"command":"SUBSCRIBED","channel":"news","subscriptions":1})
    );
    let v = c.request(r#"{"command":"SUBSCRIBE","channel":"sport.*"}"#);
    assert_eq!(
        v,
        json!({"command":"SUBSCRIBED","channel":"sport.*","subscriptions":2})
    );

    let v = c.request(r#"{"command":"UNSUBSCRIBE","channel":"news"}"#);
    assert_eq!(
        v,
        json!({"command":"UNSUBSCRIBED","channel":"news","subscriptions":1})
    );

    let v = c.request(r#"{"command":"PUBLISH","channel":"weather","message":1}"#);
    assert_eq!(
        v,
        json!({"command":"PUBLISHED","channel":"weather","receivers":0})
    );

    let v = c.request(r#"{"command":"PING"}"#);
    assert_eq!(v, json!({"command":"PONG"}));

    // A receiver is counted and gets MESSAGE with the channel published on.
    let mut sub = broker.connect();
    assert_eq!(sub.subscribe("weather"), 1);
    let v = c.request(r#"{"command":"PUBLISH","channel":"weather","message":{"t":21}}"#);
    assert_eq!(
        v,
        json!({"command":"PUBLISHED","channel":"weather","receivers":1})
    );
    let v = sub.recv();
    assert_eq!(
        v,
        json!({"command":"MESSAGE","channel":"weather","message":{"t":21}})
    );

    // ERROR carries code and a human-readable text.
    let v = c.request(r#"{"command":"NOPE"}"#);
    assert_eq!(v["command"], "ERROR");
    assert_eq!(v["code"], "unknown_command");
    assert!(v["error"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
}

#[test]
fn unknown_fields_are_ignored() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let v = c.request(r#"{"x":[1,{"y":null}],"command":"PING","z":"w","id":3}"#);
    assert_eq!(v, json!({"command":"PONG","id":3}));
    let v = c.request(r#"{"command":"SUBSCRIBE","extra":true,"channel":"a"}"#);
    assert_eq!(v["subscriptions"], 1);
}

#[test]
fn unknown_fields_may_hold_any_json_value() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    // Valid JSON that does not fit a 64-bit integer or an f64 is still valid JSON.
    for extra in [
        "1e400",
        "123456789012345678901234567890",
        "-1e-400",
        "[1e999]",
    ] {
        c.send(&format!(r#"{{"command":"PING","extra":{extra},"id":1}}"#));
        assert_eq!(
            c.recv(),
            json!({"command":"PONG","id":1}),
            "extra field {extra}"
        );
    }
}

#[test]
fn id_is_echoed_exactly() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let ids = [
        "null",
        "0",
        "-7",
        "123456789012345678901234567890",
        "18446744073709551616",
        "1.0",
        "2.50000000000000000000001",
        "1e400",
        r#""plain""#,
        r#""quote \" backslash \\ newline \n tab \t unicode \u00e9 raw é \ud83d\ude00""#,
        "true",
        "[]",
        r#"{"a":[1,2,{"b":null}],"c":"d"}"#,
    ];
    let commands = [
        r#""command":"PING""#,
        r#""command":"HELLO""#,
        r#""command":"SUBSCRIBE","channel":"a""#,
        r#""command":"UNSUBSCRIBE","channel":"a""#,
        r#""command":"PUBLISH","channel":"a","message":0"#,
    ];
    for id in ids {
        for cmd in commands {
            c.send(&format!("{{{cmd},\"id\":{id}}}"));
            let line = c.recv_line();
            assert_eq!(
                raw_field(&line, "id").as_deref(),
                Some(id),
                "{cmd} with id {id} got {line}"
            );
        }
    }
    // Whitespace inside the id value is part of its text; around it, it is not.
    c.send(r#"{"command":"PING","id": [1, 2] }"#);
    assert_eq!(raw_field(&c.recv_line(), "id").as_deref(), Some("[1, 2]"));
}

#[test]
fn id_is_echoed_on_errors_when_readable() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let cases = [
        (
            r#"{"command":"NOPE","id":[1,"x"]}"#,
            "unknown_command",
            r#"[1,"x"]"#,
        ),
        (r#"{"command":"SUBSCRIBE","id":null}"#, "bad_field", "null"),
        (
            r#"{"command":"PUBLISH","channel":"a","id":99999999999999999999999}"#,
            "bad_field",
            "99999999999999999999999",
        ),
        (
            r#"{"command":"SUBSCRIBE","channel":"a..b","id":"s\"q"}"#,
            "bad_channel",
            r#""s\"q""#,
        ),
        (
            r#"{"command":"PUBLISH","channel":"a.*","message":1,"id":{"k":1.0}}"#,
            "bad_channel",
            r#"{"k":1.0}"#,
        ),
        (r#"{"id":7}"#, "bad_frame", "7"),
        (r#"{"command":42,"id":"x"}"#, "bad_frame", r#""x""#),
    ];
    for (frame, code, id) in cases {
        c.send(frame);
        let line = c.recv_line();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["command"], "ERROR", "{frame} got {line}");
        assert_eq!(v["code"], code, "{frame} got {line}");
        assert_eq!(
            raw_field(&line, "id").as_deref(),
            Some(id),
            "{frame} got {line}"
        );
    }
    assert_alive(&mut c);
}

#[test]
fn command_names_are_case_insensitive_and_replies_upper_case() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    assert_eq!(c.request(r#"{"command":"ping"}"#)["command"], "PONG");
    assert_eq!(c.request(r#"{"command":"PiNg"}"#)["command"], "PONG");
    assert_eq!(c.request(r#"{"command":"hello"}"#)["command"], "WELCOME");
    assert_eq!(
        c.request(r#"{"command":"subscribe","channel":"x"}"#)["command"],
        "SUBSCRIBED"
    );
    // Subscribed to its own channel: the MESSAGE and the reply may come in either order.
    c.send(r#"{"command":"Publish","channel":"x","message":1}"#);
    let got = c.recv_sorted(2);
    assert_eq!(
        got[0],
        json!({"command":"MESSAGE","channel":"x","message":1})
    );
    assert_eq!(
        got[1],
        json!({"command":"PUBLISHED","channel":"x","receivers":1})
    );
    assert_eq!(
        c.request(r#"{"command":"unSubscribe","channel":"x"}"#)["command"],
        "UNSUBSCRIBED"
    );
    // An escaped command name is still the command.
    assert_eq!(c.request(r#"{"command":"P\u0049NG"}"#)["command"], "PONG");
}

#[test]
fn blank_lines_crlf_and_surrounding_whitespace() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.send_raw(b"\n\r\n\n");
    c.send_raw(b"{\"command\":\"PING\",\"id\":1}\r\n");
    assert_eq!(c.recv(), json!({"command":"PONG","id":1}));
    c.send_raw(b" \t {\"command\":\"PING\",\"id\":2} \t \n");
    assert_eq!(c.recv(), json!({"command":"PONG","id":2}));
    c.send_raw(b"\n\n {\"command\":\"PING\",\"id\":3}\t\r\n\r\n");
    assert_eq!(c.recv(), json!({"command":"PONG","id":3}));
    // Several frames in one write, and one frame in many writes.
    c.send_raw(b"{\"command\":\"PING\",\"id\":4}\n{\"command\":\"PING\",\"id\":5}\n");
    assert_eq!(c.recv()["id"], 4);
    assert_eq!(c.recv()["id"], 5);
    for byte in b"{\"command\":\"PING\",\"id\":6}\r\n" {
        c.send_raw(&[*byte]);
    }
    assert_eq!(c.recv()["id"], 6);
    // A message followed by \r\n keeps its exact text.
    let mut sub = broker.connect();
    sub.subscribe("crlf");
    c.send_raw(b"{\"command\":\"PUBLISH\",\"channel\":\"crlf\",\"message\":1.0}\r\n");
    assert_eq!(c.expect("PUBLISHED")["receivers"], 1);
    assert_eq!(sub.expect_message("crlf"), "1.0");
}

#[test]
fn bad_json_is_not_fatal() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frames: &[&[u8]] = &[
        b"not json",
        b"{",
        b"{\"command\":\"PING\"",
        b"{\"command\":\"PING\",}",
        b"{'command':'PING'}",
        b"{command:\"PING\"}",
        b"{\"command\":\"PING\"} x",
        b"{\"command\":\"PING\"}}",
        b"{\"command\":\"PING\"}{\"command\":\"PING\"}",
        b"{\"command\":\"PING\"} {\"command\":\"PING\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":NaN}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":Infinity}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":-Infinity}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":01}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":1.}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":+1}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":undefined}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"\\x41\"}",
        b"{\"command\":\"PING\"} // comment",
        b"/* comment */ {\"command\":\"PING\"}",
        b"{\"command\":/* c */\"PING\"}",
        b"# comment",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"tab\there\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"bell\x07\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"nul\x00\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"cr\rin string\"}",
        b"{\"command\":\"PING\",\"id\":\"esc\x1b\"}",
        b"\x00",
    ];
    assert_non_fatal(&mut c, frames, "bad_json");
}

#[test]
fn invalid_utf8_is_bad_json() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frames: &[&[u8]] = &[
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"\xff\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"\xc3\"}",
        // An overlong encoding of '/', and an encoded surrogate.
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"\xc0\xaf\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"\xed\xa0\x80\"}",
        b"{\"command\":\"PING\",\"id\":\"\xfe\"}",
        b"\xef\xbb\xbf\xff{\"command\":\"PING\"}",
    ];
    assert_non_fatal(&mut c, frames, "bad_json");
}

#[test]
fn bad_frame_is_not_fatal() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frames: &[&[u8]] = &[
        b"[]",
        b"[{\"command\":\"PING\"}]",
        b"\"PING\"",
        b"42",
        b"null",
        b"true",
        b"{}",
        b"{\"channel\":\"a\"}",
        b"{\"command\":5}",
        b"{\"command\":null}",
        b"{\"command\":[\"PING\"]}",
        b"{\"command\":{\"name\":\"PING\"}}",
    ];
    assert_non_fatal(&mut c, frames, "bad_frame");
}

#[test]
fn unknown_command_is_not_fatal() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frames: &[&[u8]] = &[
        b"{\"command\":\"FOO\"}",
        b"{\"command\":\"\"}",
        b"{\"command\":\" PING\"}",
        b"{\"command\":\"PING \"}",
        b"{\"command\":\"PONG\"}",
        b"{\"command\":\"MESSAGE\",\"channel\":\"a\",\"message\":1}",
        b"{\"command\":\"SUBSCRIBED\",\"channel\":\"a\"}",
    ];
    assert_non_fatal(&mut c, frames, "unknown_command");
}

#[test]
fn bad_field_is_not_fatal() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frames: &[&[u8]] = &[
        b"{\"command\":\"SUBSCRIBE\"}",
        b"{\"command\":\"SUBSCRIBE\",\"channel\":5}",
        b"{\"command\":\"SUBSCRIBE\",\"channel\":null}",
        b"{\"command\":\"SUBSCRIBE\",\"channel\":[\"a\"]}",
        b"{\"command\":\"UNSUBSCRIBE\"}",
        b"{\"command\":\"UNSUBSCRIBE\",\"channel\":true}",
        b"{\"command\":\"PUBLISH\",\"message\":1}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":1,\"message\":1}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":1,\"ack\":\"no\"}",
        b"{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":1,\"ack\":0}",
        b"{\"command\":\"HELLO\",\"echo\":\"false\"}",
        b"{\"command\":\"HELLO\",\"name\":5}",
        b"{\"command\":\"HELLO\",\"token\":[]}",
    ];
    assert_non_fatal(&mut c, frames, "bad_field");
}

#[test]
fn bad_channel_is_not_fatal() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let too_long = "a".repeat(257);
    let multibyte_too_long = format!("{}a", "é".repeat(128)); // 257 bytes, 129 chars
    let mut frames: Vec<String> = Vec::new();
    for bad in [
        "",
        ".",
        "a..b",
        ".a",
        "a.",
        "a b",
        " a",
        "a\tb",
        "a\nb",
        "a\u{1}b",
        "a\u{7f}b",
        "a\u{a0}b",
        too_long.as_str(),
        multibyte_too_long.as_str(),
        "a.>.b",
        ">.a",
        "a.*..b",
    ] {
        frames.push(format!(
            r#"{{"command":"SUBSCRIBE","channel":{}}}"#,
            json_str(bad)
        ));
        frames.push(publish_frame(bad, "1", true));
    }
    for wildcard in ["*", ">", "a.*", "a.>", "*.b", "a.*.c"] {
        frames.push(publish_frame(wildcard, "1", true));
    }
    frames.push(r#"{"command":"UNSUBSCRIBE","channel":"a..b"}"#.to_owned());
    let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_bytes()).collect();
    assert_non_fatal(&mut c, &frames, "bad_channel");
    // The failed commands left no subscription behind.
    assert_eq!(c.unsubscribe("never"), 0);
}

#[test]
fn channel_length_limit_is_256_bytes() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let mut publisher = broker.connect();
    let longest = "a".repeat(256);
    let longest_multibyte = "é".repeat(128);
    for channel in [&longest, &longest_multibyte] {
        assert_eq!(c.subscribe(channel), 1);
        assert_eq!(publisher.publish(channel, "\"hi\""), 1);
        assert_eq!(c.expect_message(channel), "\"hi\"");
        assert_eq!(c.unsubscribe(channel), 0);
    }
}

#[test]
fn message_is_spliced_byte_for_byte() {
    let broker = Broker::start(&[]);
    let mut publisher = broker.connect();
    let mut sub = broker.connect();
    sub.subscribe("raw");
    let messages = [
        "123456789012345678901234567890123456789",
        "-98765432109876543210987654321",
        "18446744073709551616",
        "1.0",
        "-0",
        "-0.0",
        "1E+2",
        "1e400",
        "0.1000000000000000055511151231257827021181583404541015625",
        "3.141592653589793238462643383279502884197169399375105820974944",
        r#""\u00e9""#,
        r#""é""#,
        r#""\"quoted\" \\ backslash \/ slash \n newline \r\t \b\f \u0000 \ud83d\ude00""#,
        r#""""#,
        "null",
        "true",
        "false",
        "[]",
        "{}",
        r#"{ "spaced" : [ 1.0 , 2 ] , "e" : "\u00e9" }"#,
        r#"{"nested":[1.0,{"x":null,"y":[1e-7,"\\"]}],"big":100000000000000000000001}"#,
    ];
    for message in messages {
        assert_eq!(publisher.publish("raw", message), 1, "publishing {message}");
        let line = sub.recv_line();
        assert_eq!(
            raw_field(&line, "message").as_deref(),
            Some(message),
            "MESSAGE line {line}"
        );
        assert!(
            line.contains(message),
            "the published bytes appear verbatim in {line}"
        );
    }
}

#[test]
fn large_message_reaches_every_subscriber_intact() {
    let broker = Broker::start(&[]);
    let mut publisher = broker.connect();
    let mut subs: Vec<Conn> = (0..3).map(|_| broker.connect()).collect();
    for s in &mut subs {
        s.subscribe("big");
    }
    // Just under the 1 MiB frame limit once wrapped in the PUBLISH frame.
    let body: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let message = format!(r#"{{"s":"{body}","n":1.50}}"#);
    assert_eq!(publisher.publish("big", &message), 3);
    for s in &mut subs {
        assert_eq!(s.expect_message("big"), message);
        s.ping();
    }
}

#[test]
fn half_closed_client_gets_every_reply_then_eof() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let mut batch = String::new();
    batch.push_str("{\"command\":\"HELLO\",\"id\":\"h\"}\n");
    batch.push_str("{\"command\":\"SUBSCRIBE\",\"channel\":\"hc\",\"id\":\"s\"}\n");
    batch.push_str("{\"command\":\"PUBLISH\",\"channel\":\"other\",\"message\":1,\"id\":\"p\"}\n");
    batch.push_str("{\"command\":\"NOPE\",\"id\":\"e\"}\n");
    for i in 0..2000 {
        batch.push_str(&format!("{{\"command\":\"PING\",\"id\":{i}}}\n"));
    }
    c.send_raw(batch.as_bytes());
    c.shutdown_write();
    let v = c.expect("WELCOME");
    assert_eq!(v["id"], "h");
    let v = c.expect("SUBSCRIBED");
    assert_eq!(v["id"], "s");
    let v = c.expect("PUBLISHED");
    assert_eq!(
        (v["id"].as_str(), v["receivers"].as_u64()),
        (Some("p"), Some(0))
    );
    let v = c.expect_error("unknown_command");
    assert_eq!(v["id"], "e");
    for i in 0..2000 {
        let v = c.expect("PONG");
        assert_eq!(v["id"], i);
    }
    c.expect_eof();
}
