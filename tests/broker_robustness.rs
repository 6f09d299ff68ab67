//! The broker against what a new user or an attacker tries first: a closed log pipe,
//! nonsense settings, names made to forge log lines, and a second `HELLO`. Each test
//! is named after the bug it guards against and runs the real binary.

mod common;

use std::io::Read;

use common::programs::{run, run_env};
use common::{Broker, BROKER};

#[test]
fn the_broker_survives_its_stderr_closing() {
    let mut broker = Broker::builder().args(&["--verbose"]).pipe_stderr().start();
    // Read a little of the log, then close the pipe, as `| head -c 300` does.
    let mut stderr = broker.take_stderr();
    let mut first = [0u8; 64];
    stderr.read_exact(&mut first).expect("some log");
    drop(stderr);
    let mut c = broker.connect();
    for _ in 0..200 {
        c.ping(); // each is logged by --verbose into the closed pipe
    }
    c.subscribe("still.alive");
    assert!(broker.try_wait().is_none(), "broker exited");
}

#[test]
fn nonsense_settings_are_refused_at_start() {
    for (flag, value) in [
        ("--max-frame", "0"),
        ("--max-pending", "0"),
        ("--max-connections", "0"),
        ("--max-subscriptions", "0"),
        ("--link-backoff-max-ms", "0"),
        ("--log-level", "warning"),
    ] {
        let (status, stdout, stderr) = run(BROKER, &["--listen", "127.0.0.1:0", flag, value]);
        let stderr = stderr.join("\n");
        assert_eq!(status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(stderr.contains("expected"), "{flag}: {stderr}");
        assert!(stdout.is_empty(), "{flag} started listening");
    }
    let (status, _, stderr) = run_env(
        BROKER,
        &["--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "warning")],
    );
    assert_eq!(status.code(), Some(2));
    assert!(stderr.join("\n").contains("RUST_LOG"));
}

#[test]
fn small_positive_limits_still_start() {
    let b = Broker::start(&[
        "--max-frame",
        "1024",
        "--max-pending",
        "1048576",
        "--max-connections",
        "1",
        "--link-backoff-max-ms",
        "100",
        "--log-level",
        "pubsub=debug,warn",
    ]);
    b.connect().ping();
}

#[test]
fn a_hello_name_cannot_forge_log_lines() {
    let node = Broker::named("hub", &["--verbose"]);
    let mut c = node.connect();
    c.send(r#"{"command":"HELLO","name":"x\n2026-01-01T00:00:00Z  INFO forged: admin logged in"}"#);
    c.expect_error("bad_field");
    let long = "n".repeat(5000);
    c.send(&format!(r#"{{"command":"HELLO","name":"{long}"}}"#));
    c.expect_error("bad_field");
    // Control characters in frames that --verbose logs (the newline splits it in two).
    c.send_raw(b"{\"command\":\"PING\",\"x\":\"\x1b[31m\nFORGED\"}\n");
    c.expect_error("bad_json");
    c.expect_error("bad_json");
    c.hello(r#","name":"fine-name""#);
    c.send(r#"{"command":"FLY"}"#);
    c.expect_error("unknown_command");
    node.wait_log("fine-name");
    let log = node.log();
    assert!(!log.contains('\u{1b}'), "raw escape in the log");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("FORGED") || l.starts_with("2026-01-01")),
        "a forged log line: {log}"
    );
    assert!(!log.contains(&long), "a 5000-byte name reached the log");
}

#[test]
fn a_second_hello_without_the_token_keeps_an_authenticated_connection() {
    let b = Broker::start(&["--token", "T"]);
    let mut c = b.connect();
    c.hello(r#","token":"T""#);
    c.subscribe("news");
    // Renaming or changing echo needs no token again.
    let w = c.hello(r#","name":"renamed","echo":false"#);
    assert_eq!(w["command"], "WELCOME");
    assert_eq!(c.publish("news", "1"), 0, "echo:false took effect");
    // A wrong token is an authentication failure, on any HELLO.
    c.send(r#"{"command":"HELLO","token":"wrong"}"#);
    c.expect_error("unauthorized");
    c.expect_eof();
}
