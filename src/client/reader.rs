//! The client's reader thread: demultiplexes what the broker sends.
//!
//! Owns the read half of the socket. `MESSAGE` frames go to the message queue, every
//! other frame to the reply queue, in order. An `ERROR` without an `id` and with a
//! fatal code is about the connection itself (slow consumer, frame too large,
//! unauthorized): it is kept as the reason the connection ended. It never writes to the
//! socket.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{ClientError, Message};
use crate::protocol::ErrorCode;

/// Read buffer size (64 KiB: a few hundred small messages per `read`).
const READ_BUFFER: usize = 64 * 1024;

/// A reply frame, parsed.
pub(super) type Reply = Result<Value, ClientError>;

/// Runs until the socket closes; then drops both senders, which wakes every waiter.
pub(super) fn run(
    stream: TcpStream,
    messages: Sender<Message>,
    replies: Sender<Reply>,
    closed: Arc<Mutex<Option<ClientError>>>,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut line = Vec::with_capacity(1024);
    let end = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(ClientError::Io(e)),
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Our broker writes `command` first: recognise MESSAGE without a full parse.
        if line.starts_with(b"{\"command\":\"MESSAGE\"") {
            match serde_json::from_slice::<Message>(&line) {
                Ok(m) => {
                    // A receiver that went away just means nobody reads messages.
                    let _ = messages.send(m);
                    continue;
                }
                Err(e) => break Some(ClientError::Protocol(format!("bad MESSAGE frame: {e}"))),
            }
        }
        let value: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => break Some(ClientError::Protocol(format!("unreadable frame: {e}"))),
        };
        match value.get("command").and_then(Value::as_str) {
            Some(c) if c.eq_ignore_ascii_case("MESSAGE") => match serde_json::from_value(value) {
                Ok(m) => {
                    let _ = messages.send(m);
                }
                Err(e) => break Some(ClientError::Protocol(format!("bad MESSAGE frame: {e}"))),
            },
            Some("ERROR") if value.get("id").is_none() => {
                // Not the answer to a command (ours all carry an id). A fatal code is
                // about the connection: the broker closes after it, and it is kept as
                // the reason. A non-fatal one cannot be matched to a call; it is dropped.
                let err = broker_error(&value);
                if err.code().is_none_or(ErrorCode::is_fatal) {
                    if let Ok(mut slot) = closed.lock() {
                        *slot = Some(err);
                    }
                }
            }
            Some(_) => {
                if replies.send(Ok(value)).is_err() {
                    break None;
                }
            }
            None => break Some(ClientError::Protocol("frame without a command".into())),
        }
    };
    if let Some(err) = end {
        if let Ok(mut slot) = closed.lock() {
            slot.get_or_insert(err);
        }
    }
    // Dropping the senders tells waiting callers the connection is gone.
}

/// Turns an `ERROR` frame into a [`ClientError::Broker`].
pub(super) fn broker_error(v: &Value) -> ClientError {
    ClientError::Broker {
        code: v
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
        message: v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}
