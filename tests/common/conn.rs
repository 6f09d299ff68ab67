//! [`Conn`]: one raw protocol-v1 connection, with [`TIMEOUT`] on every read and write.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};

use serde_json::Value;

use super::{json_str, publish_frame, raw_field, TIMEOUT};

/// How a connection's input ended, as seen by [`Conn::read_until_closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream.
    Eof,
    /// The broker reset the connection.
    Reset,
}

/// A socket that counts the bytes read from it.
struct Counting {
    stream: TcpStream,
    read: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// One raw client connection: writes frames, reads reply lines, counts bytes both ways.
pub struct Conn {
    reader: BufReader<Counting>,
    sent: u64,
}

impl Conn {
    /// Connects to `addr` with [`TIMEOUT`] on reads and writes.
    pub fn connect(addr: impl ToSocketAddrs) -> Conn {
        let stream = TcpStream::connect(addr).expect("cannot connect to the broker");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::with_capacity(64 * 1024, Counting { stream, read: 0 }),
            sent: 0,
        }
    }

    /// The underlying socket (for `try_clone`, `shutdown`, ...).
    pub fn stream(&self) -> &TcpStream {
        &self.reader.get_ref().stream
    }

    /// Bytes written to the broker so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Bytes received from the broker so far (read from the socket, consumed or not).
    pub fn bytes_received(&self) -> u64 {
        self.reader.get_ref().read
    }

    /// Writes bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let mut stream = self.stream();
        stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to broker failed: {e}"));
        self.sent += bytes.len() as u64;
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
