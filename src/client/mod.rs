//! The blocking client library: [`Client`].
//!
//! Owns one TCP connection to a broker and turns protocol v1 into method calls. A
//! reader thread (module `reader`) sorts incoming frames into messages and replies, so
//! one thread can `recv()` while another publishes: [`Client`] is `Clone`, `Send` and
//! `Sync`, and all clones share the connection. Every command carries an `id`, and a
//! caller waits for the reply with its id (replies come in command order). The library
//! never retries or reconnects on its own: a closed connection is an error the caller
//! sees.
//!
//! It needs only the `pubsub` library without its default features (`default-features
//! = false`): no broker code and none of the broker's dependencies.
//!
//! # Example
//!
//! Subscribe, publish, and read what arrives (with a broker running on the default
//! address: `cargo run --release --bin broker`):
//!
//! ```no_run
//! use std::time::Duration;
//! use pubsub::{Client, ClientError, Hello};
//!
//! # fn main() -> Result<(), ClientError> {
//! let client = Client::connect("127.0.0.1:7400")?;
//! // HELLO is optional unless the broker runs with --token.
//! let welcome = client.hello(&Hello::new().name("example"))?;
//! println!("connected to {} as client {}", welcome.server, welcome.client_id);
//!
//! client.subscribe("news.*")?;
//! // Any serialisable value is sent as JSON; the reply counts the receivers (us).
//! let receivers = client.publish("news.world", &serde_json::json!({ "headline": "hi" }))?;
//! assert_eq!(receivers, 1);
//!
//! // Another thread could publish through a clone while this one receives.
//! while let Some(message) = client.recv_timeout(Duration::from_secs(1))? {
//!     println!("{}: {}", message.channel, message.raw());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Errors say whether the broker refused something and why:
//!
//! ```no_run
//! use pubsub::protocol::ErrorCode;
//! use pubsub::{Client, ClientError};
//!
//! let client = Client::connect("127.0.0.1:7400").expect("connect");
//! match client.subscribe("news") {
//!     Ok(count) => println!("{count} subscriptions"),
//!     // The connection stays open: try another channel, or unsubscribe first.
//!     Err(e) if e.code() == Some(ErrorCode::Limit) => eprintln!("too many subscriptions"),
//!     // Closed by the broker; `e` carries its reason when it gave one.
//!     Err(e @ ClientError::Closed { .. }) => eprintln!("{e}"),
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```

mod error;
mod message;
mod reader;

use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

pub use error::ClientError;
pub use message::Message;

use crate::protocol::{validate_pattern, validate_publish, write_json_str};
use reader::Reply;

/// How long a command waits for its reply unless [`Client::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed write waits for the reader thread to learn why the broker closed
/// the connection (it usually sent an `ERROR` first). Only paid once, on a dead
/// connection.
const CLOSE_REASON_WAIT: Duration = Duration::from_secs(1);

/// Options for [`Client::hello`].
///
/// ```
/// use pubsub::Hello;
///
/// let hello = Hello::new().name("dashboard").echo(false).token("s3cret");
/// assert_eq!(hello.name.as_deref(), Some("dashboard"));
/// assert!(!hello.echo);
/// // The defaults: no name, own messages come back, no token.
/// let plain = Hello::new();
/// assert!(plain.echo && plain.name.is_none() && plain.token.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Hello {
    /// Client name shown in the broker's logs.
    pub name: Option<String>,
    /// Whether to receive messages this connection publishes itself.
    pub echo: bool,
    /// Token, when the broker runs with `--token`.
    pub token: Option<String>,
}

impl Default for Hello {
    fn default() -> Self {
        Hello {
            name: None,
            echo: true,
            token: None,
        }
    }
}

impl Hello {
    /// Default options: no name, echo on, no token.
    pub fn new() -> Hello {
        Hello::default()
    }
    /// Sets the client name.
    pub fn name(mut self, name: impl Into<String>) -> Hello {
        self.name = Some(name.into());
        self
    }
    /// Sets whether own publications come back.
    pub fn echo(mut self, echo: bool) -> Hello {
        self.echo = echo;
        self
    }
    /// Sets the authentication token.
    pub fn token(mut self, token: impl Into<String>) -> Hello {
        self.token = Some(token.into());
        self
    }
}

/// The broker's `WELCOME`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Welcome {
    /// Broker name.
    pub server: String,
    /// Broker version.
    pub version: String,
    /// Largest frame the broker accepts.
    pub max_frame: u64,
    /// This connection's id on the broker.
    pub client_id: u64,
}

/// The writing side: the socket and the queue of replies, locked together so that a
/// command's send and its reply pair up.
struct Calls {
    stream: TcpStream,
    replies: Receiver<Reply>,
}

struct Inner {
    calls: Mutex<Calls>,
    messages: Mutex<Receiver<Message>>,
    closed: Arc<Mutex<Option<ClientError>>>,
    next_id: AtomicU64,
    timeout_ms: AtomicU64,
    shutdown: TcpStream,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the reader thread.
        let _ = self.shutdown.shutdown(Shutdown::Both);
    }
}

/// A connection to a broker. See the module documentation.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// Connects to a broker. Nothing is sent until the first call.
    ///
    /// ```
    /// use pubsub::{Client, ClientError};
    ///
    /// // A port where nothing listens: the error is the operating system's.
    /// let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    /// let err = Client::connect(free).unwrap_err();
    /// assert!(matches!(err, ClientError::Io(_)));
    /// assert_eq!(err.code(), None, "not an error the broker sent");
    /// ```
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        Client::from_stream(stream)
    }

    /// Connects to a broker, giving up after `timeout` per address tried.
    pub fn connect_timeout(
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => return Client::from_stream(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))
            .into())
    }

    fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        let (msg_tx, msg_rx) = mpsc::channel();
        let (reply_tx, reply_rx) = mpsc::channel();
        let closed = Arc::new(Mutex::new(None));
        let read_half = stream.try_clone()?;
        let shutdown = stream.try_clone()?;
        let closed_for_reader = Arc::clone(&closed);
        std::thread::Builder::new()
            .name("pubsub-client-reader".into())
            .spawn(move || reader::run(read_half, msg_tx, reply_tx, closed_for_reader))?;
        Ok(Client {
            inner: Arc::new(Inner {
                calls: Mutex::new(Calls {
                    stream,
                    replies: reply_rx,
                }),
                messages: Mutex::new(msg_rx),
                closed,
                next_id: AtomicU64::new(1),
                timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
                shutdown,
            }),
        })
    }

    /// Sets how long commands wait for their reply.
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner
            .timeout_ms
            .store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Identifies the connection, sets `echo`, and authenticates.
    pub fn hello(&self, hello: &Hello) -> Result<Welcome, ClientError> {
        let mut frame = serde_json::json!({ "command": "HELLO", "echo": hello.echo });
        if let Some(name) = &hello.name {
            frame["name"] = Value::from(name.as_str());
        }
        if let Some(token) = &hello.token {
            frame["token"] = Value::from(token.as_str());
        }
        let reply = self.call_value(frame, "WELCOME")?;
        serde_json::from_value(reply)
            .map_err(|e| ClientError::Protocol(format!("bad WELCOME: {e}")))
    }

    /// Subscribes to a channel or pattern; returns this connection's subscription count.
    pub fn subscribe(&self, channel: &str) -> Result<usize, ClientError> {
        validate_pattern(channel)?;
        let reply = self.call_value(
            serde_json::json!({ "command": "SUBSCRIBE", "channel": channel }),
            "SUBSCRIBED",
        )?;
        count_field(&reply, "subscriptions")
    }

    /// Removes exactly this subscription; returns the remaining count.
    pub fn unsubscribe(&self, channel: &str) -> Result<usize, ClientError> {
        validate_pattern(channel)?;
        let reply = self.call_value(
            serde_json::json!({ "command": "UNSUBSCRIBE", "channel": channel }),
            "UNSUBSCRIBED",
        )?;
        count_field(&reply, "subscriptions")
    }

    /// Publishes `message` (any serialisable value) and waits for the broker's count of
    /// receivers.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<usize, ClientError> {
        let raw = serde_json::to_string(message)?;
        self.publish_raw(channel, &raw)
    }

    /// Publishes a message given as JSON text, sent exactly as written: subscribers
    /// receive `1.0` as `1.0` and long numbers with every digit. Text that is not JSON
    /// is refused before anything is sent.
    ///
    /// ```no_run
    /// # let client = pubsub::Client::connect("127.0.0.1:7400").unwrap();
    /// let receivers = client.publish_raw("prices.btc", r#"{"usd":64123.50000000001}"#)?;
    /// # Ok::<(), pubsub::ClientError>(())
    /// ```
    pub fn publish_raw(&self, channel: &str, json: &str) -> Result<usize, ClientError> {
        validate_publish(channel)?;
        let _: &serde_json::value::RawValue = serde_json::from_str(json)?;
        let id = self.next_id();
        let line = publish_line(channel, json, Some(id));
        let reply = self.call(&line, id, "PUBLISHED")?;
        count_field(&reply, "receivers")
    }

    /// Publishes without asking for a reply (`ack: false`): fastest, but a broker-side
    /// error is not reported back.
    pub fn publish_no_ack<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<(), ClientError> {
        validate_publish(channel)?;
        let raw = serde_json::to_string(message)?;
        let line = publish_line(channel, &raw, None);
        let calls = lock(&self.inner.calls);
        self.check_open()?;
        self.send(&calls, &line)?;
        Ok(())
    }

    /// Sends `PING` and returns the round-trip time. Every message published before
    /// the ping's reply has been received has already been queued for [`Client::recv`].
    pub fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.call_value(serde_json::json!({ "command": "PING" }), "PONG")?;
        Ok(start.elapsed())
    }

    /// Waits for the next message.
    pub fn recv(&self) -> Result<Message, ClientError> {
        let messages = lock(&self.inner.messages);
        messages.recv().map_err(|_| self.closed_error())
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` when none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        let messages = lock(&self.inner.messages);
        match messages.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.closed_error()),
        }
    }

    /// Takes a message if one is already waiting.
    pub fn try_recv(&self) -> Result<Option<Message>, ClientError> {
        let messages = lock(&self.inner.messages);
        match messages.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(self.closed_error()),
        }
    }

    /// Iterates over incoming messages until the connection closes.
    pub fn messages(&self) -> Messages<'_> {
        Messages {
            client: self,
            done: false,
        }
    }

    /// Closes the connection (all clones).
    pub fn close(&self) {
        let _ = self.inner.shutdown.shutdown(Shutdown::Both);
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The error for "the connection is closed", with the reason when one is known.
    /// The reason stays stored, so every caller sees it.
    fn closed_error(&self) -> ClientError {
        let slot = lock(&self.inner.closed);
        ClientError::Closed {
            reason: slot.as_ref().map(|r| Box::new(copy_reason(r))),
        }
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if lock(&self.inner.closed).is_some() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// Writes one line. A write that fails because the peer is gone is reported as
    /// [`ClientError::Closed`], the same as a read would, so callers see one error for
    /// "the connection is closed". The broker often says why before closing (an
    /// `ERROR` such as `frame_too_large`); the reader thread is given a moment
    /// ([`CLOSE_REASON_WAIT`]) to reach the end of the stream so that reason is kept.
    fn send(&self, calls: &Calls, line: &[u8]) -> Result<(), ClientError> {
        use std::io::ErrorKind::*;
        match (&calls.stream).write_all(line) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected
                ) =>
            {
                let deadline = Instant::now() + CLOSE_REASON_WAIT;
                // Replies still queued are for earlier commands: skip them until the
                // reader thread hangs up.
                while let Ok(_stale) = calls
                    .replies
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                }
                Err(self.closed_error())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a command built as a JSON object and waits for `expect`.
    fn call_value(&self, mut frame: Value, expect: &str) -> Result<Value, ClientError> {
        let id = self.next_id();
        frame["id"] = Value::from(id);
        let mut line = serde_json::to_vec(&frame)?;
        line.push(b'\n');
        self.call(&line, id, expect)
    }

    /// Sends one line and waits for the reply carrying `id`.
    fn call(&self, line: &[u8], id: u64, expect: &str) -> Result<Value, ClientError> {
        let timeout = Duration::from_millis(self.inner.timeout_ms.load(Ordering::Relaxed));
        let calls = lock(&self.inner.calls);
        self.check_open()?;
        self.send(&calls, line)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = match calls.replies.recv_timeout(left) {
                Ok(reply) => reply?,
                Err(RecvTimeoutError::Timeout) => return Err(ClientError::Timeout),
                Err(RecvTimeoutError::Disconnected) => return Err(self.closed_error()),
            };
            match reply.get("id").and_then(Value::as_u64) {
                Some(got) if got == id => {}
                // A late reply to an earlier command that timed out, or an error for a
                // publish without ack: not ours.
                Some(got) if got < id => continue,
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected reply while waiting for {expect}: {reply}"
                    )))
                }
            }
            let command = reply.get("command").and_then(Value::as_str).unwrap_or("");
            if command == "ERROR" {
                return Err(reader::broker_error(&reply));
            }
            if command != expect {
                return Err(ClientError::Protocol(format!(
                    "expected {expect}, got {reply}"
                )));
            }
            return Ok(reply);
        }
    }
}

/// Encodes a PUBLISH line; `id` None means `ack: false`.
fn publish_line(channel: &str, json: &str, id: Option<u64>) -> Vec<u8> {
    let mut line = Vec::with_capacity(json.len() + channel.len() + 64);
    line.extend_from_slice(b"{\"command\":\"PUBLISH\",\"channel\":");
    write_json_str(&mut line, channel);
    match id {
        Some(id) => line.extend_from_slice(format!(",\"id\":{id}").as_bytes()),
        None => line.extend_from_slice(b",\"ack\":false"),
    }
    line.extend_from_slice(b",\"message\":");
    line.extend_from_slice(json.as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

fn count_field(reply: &Value, field: &str) -> Result<usize, ClientError> {
    reply
        .get(field)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| ClientError::Protocol(format!("reply without '{field}': {reply}")))
}

/// Iterator over incoming messages; see [`Client::messages`]. Yields `Err` once when
/// the connection closes, then ends.
pub struct Messages<'a> {
    client: &'a Client,
    done: bool,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.client.recv();
        self.done = next.is_err();
        Some(next)
    }
}

/// A copy of a stored close reason (`ClientError` is not `Clone`: `io::Error` isn't).
fn copy_reason(e: &ClientError) -> ClientError {
    match e {
        ClientError::Broker { code, message } => ClientError::Broker {
            code: code.clone(),
            message: message.clone(),
        },
        ClientError::Io(io) => ClientError::Io(std::io::Error::new(io.kind(), io.to_string())),
        ClientError::Protocol(text) => ClientError::Protocol(text.clone()),
        ClientError::Timeout => ClientError::Timeout,
        other => ClientError::Protocol(other.to_string()),
    }
}
