//! End-to-end tests of the programs `client`, `publisher` and `chat` against a real
//! broker started on a free loopback port.
//!
//! Each test waits on what the programs print (`subscribed to news` on stderr, a message
//! line on stdout), never on the clock; see `tests/common`.

mod common;

use common::programs::{chat, client_pub, client_sub, run};
use common::{unused_addr, Broker, Program, CHAT, CLIENT, PUBLISHER};
use serde_json::Value;

/// `[HH:MM:SS] rest` -> `rest`, checking the clock's shape.
fn strip_clock(line: &str) -> &str {
    let bytes = line.as_bytes();
    assert!(
        line.len() > 11 && bytes[0] == b'[' && bytes[9] == b']' && bytes[10] == b' ',
        "not a chat line: {line:?}"
    );
    for (i, b) in line[1..9].bytes().enumerate() {
        assert!(
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            },
            "bad clock in {line:?}"
        );
    }
    &line[11..]
}

#[test]
fn sub_prints_messages_published_by_pub() {
    let broker = Broker::start(&[]);
    let mut sub = client_sub(&broker, &["news"], &["--count", "2"]);
    assert_eq!(
        client_pub(&broker, "news", "\"hello\""),
        "published to 1 receiver"
    );
    assert_eq!(
        client_pub(
            &broker,
            "news",
            r#"{"n": 1.0, "big": 123456789012345678901234567890}"#
        ),
        "published to 1 receiver"
    );
    assert_eq!(
        sub.stdout.rest(),
        [
            r#"news: "hello""#,
            r#"news: {"n": 1.0, "big": 123456789012345678901234567890}"#
        ]
    );
    assert!(sub.wait().success());
}

#[test]
fn sub_json_lines_parse_and_keep_the_message() {
    let broker = Broker::start(&[]);
    let mut sub = client_sub(&broker, &["news", "sensors.>"], &["--json", "--count", "3"]);
    // Not JSON, so sent as a string.
    client_pub(&broker, "news", "hello world");
    client_pub(&broker, "sensors.kitchen.temp", "21.50");
    client_pub(&broker, "news", r#"{"tab":"a\tb","e":"\u00e9"}"#);
    let lines = sub.stdout.rest();
    assert!(sub.wait().success());
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(
        parsed[0],
        serde_json::json!({"channel": "news", "message": "hello world"})
    );
    assert_eq!(parsed[1]["channel"], "sensors.kitchen.temp");
    assert_eq!(
        parsed[2]["message"],
        serde_json::json!({"tab": "a\tb", "e": "é"})
    );
    // The payload text is spliced as published, not re-serialised.
    assert_eq!(
        lines[1],
        r#"{"channel":"sensors.kitchen.temp","message":21.50}"#
    );
    assert!(
        lines[2].contains(r#""tab":"a\tb","e":"\u00e9""#),
        "{}",
        lines[2]
    );
}

#[test]
fn pub_prints_the_receiver_count() {
    let broker = Broker::start(&[]);
    assert_eq!(client_pub(&broker, "news", "1"), "published to 0 receivers");
    let _a = client_sub(&broker, &["news"], &[]);
    let _b = client_sub(&broker, &["news.*", "news"], &[]);
    assert_eq!(client_pub(&broker, "news", "2"), "published to 2 receivers");
}

#[test]
fn ping_prints_the_round_trip_time() {
    let broker = Broker::start(&[]);
    let (status, out, err) = run(CLIENT, &["--addr", &broker.addr(), "ping"]);
    assert!(status.success(), "{err:?}");
    let prefix = format!("pong from {} in ", broker.addr());
    let ms = out[0]
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("unexpected ping output {out:?}"));
    assert!(ms.parse::<f64>().is_ok(), "{ms}");
}

#[test]
fn publisher_delivers_sequenced_messages() {
    let broker = Broker::start(&[]);
    let mut sub = client_sub(&broker, &["news", "sports"], &["--json", "--count", "6"]);
    let (status, out, err) = run(
        PUBLISHER,
        &[
            "--addr",
            &broker.addr(),
            "--count",
            "3",
            "--interval",
            "0",
            "news",
            "sports",
        ],
    );
    assert!(status.success(), "{err:?}");
    assert_eq!(out.len(), 6, "{out:?}");
    for line in &out {
        assert!(line.ends_with(" -> 1 receiver"), "{line}");
    }
    let received: Vec<Value> = sub
        .stdout
        .rest()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(sub.wait().success());
    for channel in ["news", "sports"] {
        let seqs: Vec<u64> = received
            .iter()
            .filter(|m| m["channel"] == channel)
            .map(|m| {
                let message = &m["message"];
                assert_eq!(message["channel"], channel);
                assert!(message["time"].as_str().is_some_and(|t| t.ends_with('Z')));
                assert!(message["sent_at_ms"].as_u64().is_some());
                message["seq"].as_u64().expect("seq")
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3], "{channel}: {received:?}");
    }
}

#[test]
fn publisher_rejects_a_bad_interval() {
    let (status, _, err) = run(PUBLISHER, &["--interval", "soon"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.join("\n").contains("not a duration"), "{err:?}");
}

#[test]
fn two_chats_talk_and_do_not_echo_their_own_lines() {
    let broker = Broker::start(&[]);
    let mut alice = chat(&broker, "alice", &["lobby"]);
    let mut bob = chat(&broker, "bob", &["lobby"]);

    alice.send_line("hello from alice");
    let line = bob.stdout.next_line().expect("bob sees alice");
    assert_eq!(strip_clock(&line), "alice: hello from alice");

    bob.send_line("hi alice");
    let line = alice.stdout.next_line().expect("alice sees bob");
    assert_eq!(strip_clock(&line), "bob: hi alice");

    alice.close_stdin();
    bob.close_stdin();
    assert!(alice.wait().success());
    assert!(bob.wait().success());
    // Neither saw its own line come back.
    assert_eq!(alice.stdout.rest(), Vec::<String>::new());
    assert_eq!(bob.stdout.rest(), Vec::<String>::new());
}

#[test]
fn chat_join_and_leave_switch_rooms() {
    let broker = Broker::start(&[]);
    let mut alice = chat(&broker, "alice", &["lobby"]);
    let mut bob = chat(&broker, "bob", &["lobby"]);

    alice.send_line("/join dev");
    alice.stderr.wait_for(|l| l == "* joined dev");
    bob.send_line("/join dev");
    bob.stderr.wait_for(|l| l == "* joined dev");
    // Bob's lines now go to dev; alice, in two rooms, sees the room.
    bob.send_line("in dev");
    let line = alice.stdout.next_line().expect("alice sees dev");
    let rest = line
        .strip_prefix("#dev ")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(strip_clock(rest), "bob: in dev");

    alice.send_line("/leave dev");
    alice.stderr.wait_for(|l| l.starts_with("* left dev"));
    bob.send_line("alice left, she will not see this");
    bob.send_line("/leave");
    bob.stderr.wait_for(|l| l.starts_with("* left dev"));
    bob.send_line("back in the lobby");
    // Bob's lines reach alice in order, so the next line she sees is the lobby one.
    let line = alice.stdout.next_line().expect("alice sees lobby");
    assert_eq!(strip_clock(&line), "bob: back in the lobby");

    alice.send_line("/quit");
    assert!(alice.wait().success());
}

#[test]
fn chat_sends_piped_lines_as_json_and_quits_at_eof() {
    let broker = Broker::start(&[]);
    let mut sub = client_sub(&broker, &["chat.lobby"], &["--json", "--count", "2"]);
    let mut bot = Program::spawn(CHAT, &["--addr", &broker.addr(), "--name", "bot"]);
    bot.send_line("first line");
    bot.send_line("/rooms");
    bot.send_line("//slash");
    bot.close_stdin();
    assert!(bot.wait().success(), "{:?}", bot.stderr.rest());
    let lines = sub.stdout.rest();
    assert!(sub.wait().success());
    let texts: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            assert_eq!(v["channel"], "chat.lobby");
            assert_eq!(v["message"]["sender"], "bot");
            assert!(v["message"]["time"].is_string());
            v["message"]["text"].as_str().expect("text").to_string()
        })
        .collect();
    assert_eq!(texts, ["first line", "/slash"]);
}

#[test]
fn chat_shows_foreign_messages_with_an_unknown_sender() {
    let broker = Broker::start(&[]);
    let mut alice = chat(&broker, "alice", &["lobby"]);
    client_pub(&broker, "chat.lobby", "plain text");
    let line = alice.stdout.next_line().expect("line");
    assert_eq!(strip_clock(&line), "?: plain text");
}

#[test]
fn chat_refuses_a_wildcard_room() {
    let (status, _, err) = run(CHAT, &["--room", "a.*"]);
    assert!(!status.success());
    assert!(err.join("\n").contains("bad room name"), "{err:?}");
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let addr = unused_addr();
    let cases: [(&str, &str, Vec<&str>); 5] = [
        ("client", CLIENT, vec!["sub", "news"]),
        ("client", CLIENT, vec!["pub", "news", "1"]),
        ("client", CLIENT, vec!["ping"]),
        ("publisher", PUBLISHER, vec!["--count", "1"]),
        ("chat", CHAT, vec!["--name", "alice"]),
    ];
    for (name, exe, extra) in cases {
        let mut args = vec!["--addr", addr.as_str()];
        args.extend(extra);
        let (status, out, err) = run(exe, &args);
        assert_eq!(status.code(), Some(1), "{name} {args:?}: {err:?}");
        assert!(out.is_empty(), "{out:?}");
        let want = format!("{name}: cannot connect to {addr}: ");
        assert!(
            err.len() == 1 && err[0].starts_with(&want) && !err[0].contains("os error"),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn token_is_sent_in_hello() {
    let broker = Broker::start(&["--token", "s3cret"]);
    let (status, _, err) = run(CLIENT, &["--addr", &broker.addr(), "pub", "news", "1"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.join("\n").contains("unauthorized"), "{err:?}");
    let (status, out, err) = run(
        CLIENT,
        &[
            "--addr",
            &broker.addr(),
            "--token",
            "s3cret",
            "pub",
            "news",
            "1",
        ],
    );
    assert!(status.success(), "{err:?}");
    assert_eq!(out, ["published to 0 receivers"]);
}

#[test]
fn pub_to_a_wildcard_is_refused() {
    let broker = Broker::start(&[]);
    let (status, _, err) = run(CLIENT, &["--addr", &broker.addr(), "pub", "news.*", "1"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err[0].starts_with("client: cannot publish to news.*"),
        "{err:?}"
    );
}

#[test]
fn sub_exits_with_an_error_when_the_broker_goes_away() {
    let mut broker = Broker::start(&[]);
    let mut sub = client_sub(&broker, &["news"], &[]);
    broker.kill();
    let status = sub.wait();
    assert_eq!(status.code(), Some(1));
    let err = sub.stderr.rest();
    assert!(
        err.iter().any(|l| l.contains("connection closed")),
        "{err:?}"
    );
}

#[test]
fn help_shows_examples() {
    for exe in [CLIENT, PUBLISHER, CHAT] {
        let (status, out, _) = run(exe, &["--help"]);
        assert!(status.success());
        let text = out.join("\n");
        assert!(
            text.contains("Examples:") && text.contains("--addr"),
            "{text}"
        );
    }
}
