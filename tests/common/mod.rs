//! Harness for the broker's integration tests: starts the real `broker` binary on a
//! free loopback port and speaks raw protocol v1 to it (newline-delimited JSON over a
//! `std::net::TcpStream`), with no client library in between.
//!
//! Every socket read and write has a generous timeout ([`TIMEOUT`]). It is a failure
//! guard, so that a broken broker fails a test instead of hanging it; no test uses it
//! (or a sleep) to wait for something it could wait on.
//!
//! Set `BROKER_TEST_LOG=1` to see the brokers' logs on stderr.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub mod node;

use serde_json::value::RawValue;
use serde_json::Value;

/// How long any single read, write or wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running broker process, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
    pid: u32,
}

impl Broker {
    /// Starts `broker --listen 127.0.0.1:0 ARGS...` and waits for its
    /// `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_wrapped(&[], args)
    }

    /// Like [`Broker::start`], but runs the broker under a wrapper command (for example
    /// `prlimit --nofile=64:64 --`).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Broker {
        let stderr = if std::env::var_os("BROKER_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let broker = env!("CARGO_BIN_EXE_broker");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(broker);
                c
            }
            None => Command::new(broker),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot start the broker binary");
        let pid = child.id();
        let addr = read_announcement(&mut child);
        Broker {
            child: Some(child),
            addr,
            pid,
        }
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a new raw connection to the broker.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// The broker's resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("cannot read the broker's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("no VmRSS line in /proc status")
    }

    /// Sends SIGTERM to the broker.
    pub fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits (bounded by [`TIMEOUT`]) for the broker to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker already waited for");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let status = child.wait();
            // On timeout the receiver is gone; the child is then killed below.
            let _ = tx.send(status);
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(status) => status.expect("waiting for the broker failed"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("broker did not exit within {TIMEOUT:?}");
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a started broker's `listening on ADDR` line (stdout must be piped) and
/// returns the address; stdout is drained afterwards so the broker never blocks on it.
pub fn read_announcement(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("broker stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = rx
        .recv_timeout(TIMEOUT)
        .expect("broker did not print `listening on ADDR`");
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line from broker: {line:?}"));
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}

/// How a connection's input ended, as seen by [`Conn::read_until_closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream.
    Eof,
    /// The broker reset the connection.
    Reset,
}

/// One raw client connection: writes frames, reads reply lines.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr` with [`TIMEOUT`] on reads and writes.
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("cannot connect to the broker");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
        }
    }

    /// The underlying socket (for `try_clone`, `shutdown`, ...).
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let mut stream = self.reader.get_ref();
        stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to broker failed: {e}"));
    }

    /// Writes one frame followed by `\n`.
    pub fn send(&mut self, frame: &str) {
        let mut bytes = Vec::with_capacity(frame.len() + 1);
        bytes.extend_from_slice(frame.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes);
    }

    /// Shuts down the write side (half-close); replies can still be read.
    pub fn shutdown_write(&self) {
        self.stream()
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write) failed");
    }

    /// Reads one line, without its `\n`. Fails on EOF, timeout, a line not ending in
    /// `\n`, or non-UTF-8 output.
    pub fn recv_line(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => panic!("broker closed the connection; expected a frame"),
            Ok(_) => {}
            Err(e) => panic!("reading a frame failed: {e} (got so far: {buf:?})"),
        }
        assert_eq!(
            buf.pop(),
            Some(b'\n'),
            "connection ended inside a frame: {:?}",
            String::from_utf8_lossy(&buf)
        );
        String::from_utf8(buf).expect("broker wrote a frame that is not UTF-8")
    }

    /// Reads one frame and parses it as JSON.
    pub fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("broker wrote bad JSON {line:?}: {e}"))
    }

    /// Reads `n` frames whose relative order the contract leaves open (a MESSAGE from
    /// one's own PUBLISH and its PUBLISHED reply), sorted by `command`.
    pub fn recv_sorted(&mut self, n: usize) -> Vec<Value> {
        let mut frames: Vec<Value> = (0..n).map(|_| self.recv()).collect();
        frames.sort_by_key(|v| v["command"].to_string());
        frames
    }

    /// Reads one frame and checks its `command` is `command`.
    pub fn expect(&mut self, command: &str) -> Value {
        let v = self.recv();
        assert_eq!(v["command"], command, "expected {command}, got {v}");
        v
    }

    /// Sends `frame` and returns the next frame read.
    pub fn request(&mut self, frame: &str) -> Value {
        self.send(frame);
        self.recv()
    }

    /// Reads one frame and checks it is an `ERROR` with `code` and a text.
    pub fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("ERROR");
        assert_eq!(v["code"], code, "wrong error code in {v}");
        assert!(v["error"].is_string(), "ERROR without text: {v}");
        v
    }

    /// Sends PING and checks the next frame is PONG: everything the broker queued to
    /// this connection before has been read.
    pub fn ping(&mut self) {
        self.send(r#"{"command":"PING"}"#);
        self.expect("PONG");
    }

    /// Sends `HELLO` with the given extra fields (`""` or `,"echo":false`...) and checks
    /// the `WELCOME`.
    pub fn hello(&mut self, extra: &str) -> Value {
        self.send(&format!(r#"{{"command":"HELLO"{extra}}}"#));
        self.expect("WELCOME")
    }

    /// Subscribes and returns the connection's subscription count from `SUBSCRIBED`.
    pub fn subscribe(&mut self, channel: &str) -> u64 {
        self.send(&format!(
            r#"{{"command":"SUBSCRIBE","channel":{}}}"#,
            json_str(channel)
        ));
        let v = self.expect("SUBSCRIBED");
        assert_eq!(v["channel"], channel, "{v}");
        v["subscriptions"].as_u64().expect("subscriptions count")
    }

    /// Unsubscribes and returns the count from `UNSUBSCRIBED`.
    pub fn unsubscribe(&mut self, channel: &str) -> u64 {
        self.send(&format!(
            r#"{{"command":"UNSUBSCRIBE","channel":{}}}"#,
            json_str(channel)
        ));
        let v = self.expect("UNSUBSCRIBED");
        assert_eq!(v["channel"], channel, "{v}");
        v["subscriptions"].as_u64().expect("subscriptions count")
    }

    /// Publishes `message` (raw JSON text) and returns `receivers` from `PUBLISHED`.
    pub fn publish(&mut self, channel: &str, message: &str) -> u64 {
        self.send(&publish_frame(channel, message, true));
        let v = self.expect("PUBLISHED");
        assert_eq!(v["channel"], channel, "{v}");
        v["receivers"].as_u64().expect("receivers count")
    }

    /// Reads one `MESSAGE` on `channel` and returns its `message` as raw JSON text.
    pub fn expect_message(&mut self, channel: &str) -> String {
        let line = self.recv_line();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("broker wrote bad JSON {line:?}: {e}"));
        assert_eq!(v["command"], "MESSAGE", "expected MESSAGE, got {line}");
        assert_eq!(v["channel"], channel, "{line}");
        raw_field(&line, "message").expect("MESSAGE without message")
    }

    /// Checks that the broker closes the connection now: no further frame, then end of
    /// stream (a reset counts as closed too).
    pub fn expect_eof(&mut self) {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected the connection to close, got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection to close, read failed: {e}"),
        }
    }

    /// Reads one line (without its newline), or `None` if the broker closed or
    /// reset the connection first.
    pub fn recv_line_or_end(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => Some(String::from_utf8_lossy(&buf).trim_end().to_string()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading a frame failed: {e}"),
        }
    }

    /// Reads every remaining line until the connection ends; returns the lines (an
    /// unterminated tail included) and how it ended.
    pub fn read_until_closed(&mut self) -> (Vec<String>, Ending) {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return (lines, Ending::Eof),
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    lines.push(String::from_utf8_lossy(&buf).into_owned());
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return (lines, Ending::Reset)
                }
                Err(e) => panic!("expected the connection to close, read failed: {e}"),
            }
        }
    }
}

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
