//! The one harness for the integration tests: real processes, raw sockets, bounded waits.
//!
//! - [`broker`]: [`Broker`], the `broker` binary started on a free loopback port (or a
//!   given one), found through its `listening on ADDR` line; it keeps its log when asked
//!   (always for a named federation broker) and presents its `--token` for `STATS`.
//! - [`conn`]: [`Conn`], one raw protocol-v1 connection (newline-delimited JSON over a
//!   `std::net::TcpStream`, no client library in between).
//! - [`programs`]: [`Program`] and runners for the `client`, `publisher` and `chat`
//!   programs, whose output is read line by line on background threads.
//! - [`federation`]: subscribers, the waits for links and interest to settle, and
//!   [`FakeLink`], a plain socket speaking the link frames by hand.
//!
//! One time policy, [`TIMEOUT`]: every read, write, line or exit wait fails the test
//! after it, so a broken broker fails a test instead of hanging it. It is a failure
//! guard, never a pacing device: tests wait on what they can observe (a reply, a PONG
//! barrier, a printed line, an end of stream) and never sleep. The only polls are of
//! state that nothing announces (a link's interest in `STATS`), and they are bounded by
//! [`TIMEOUT`] too.
//!
//! Set `BROKER_TEST_LOG=1` to see every broker's log on stderr.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod conn;
pub mod faults;
pub mod federation;
pub mod programs;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

pub use broker::Broker;
pub use conn::{Conn, Ending};
pub use federation::FakeLink;
pub use programs::Program;

/// How long any single read, write, expected line, exit or settling wait may take
/// before the test fails. Generous: CI machines are slow and several test binaries run
/// at once.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the `broker` binary.
pub const BROKER: &str = env!("CARGO_BIN_EXE_broker");
/// The path of the `client` program.
pub const CLIENT: &str = env!("CARGO_BIN_EXE_client");
/// The path of the `publisher` program.
pub const PUBLISHER: &str = env!("CARGO_BIN_EXE_publisher");
/// The path of the `chat` program.
pub const CHAT: &str = env!("CARGO_BIN_EXE_chat");

/// A JSON string literal for `s`.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A `PUBLISH` frame with `message` as raw JSON text.
pub fn publish_frame(channel: &str, message: &str, ack: bool) -> String {
    let ack = if ack { "" } else { r#","ack":false"# };
    format!(
        r#"{{"command":"PUBLISH","channel":{},"message":{message}{ack}}}"#,
        json_str(channel)
    )
}

/// The raw JSON text of field `name` in the frame `line`, byte for byte as the broker
/// wrote it (so `1.0` stays `1.0` and escapes stay escaped).
pub fn raw_field(line: &str, name: &str) -> Option<String> {
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("broker wrote a frame that is not an object {line:?}: {e}"));
    fields.get(name).map(|v| v.get().to_owned())
}

/// A loopback address where nothing listens: bound, then released (for a broker to
/// take with `--listen`, or to dial and fail).
pub fn unused_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").to_string()
}

/// Polls `cond` until it holds; fails the test after [`TIMEOUT`]. Only for state that
/// no event announces (a link's interest, seen through `STATS`).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Nothing to block on: the broker does not announce this state.
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, at most [`TIMEOUT`]; on timeout it is killed and the
/// test fails with `what` and `context()`.
pub fn wait_exit(mut child: Child, what: &str, context: impl FnOnce() -> String) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // On timeout the receiver is gone and the child is killed below.
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(status) => status.unwrap_or_else(|e| panic!("waiting for {what} failed: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not exit within {TIMEOUT:?}; {}", context());
        }
    }
}
