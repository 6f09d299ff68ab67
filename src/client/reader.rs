//! The client's reader thread: demultiplexes what the broker sends.
//!
//! Owns the read half of the socket. `MESSAGE` frames go to the message queue, every
//! other frame to the reply queue, in order. An `ERROR` without an `id` is not the
//! answer to a command (ours all carry one): with a fatal code it is about the
//! connection itself (slow consumer, frame too large, unauthorized) and is kept as the
//! reason the connection ended; with any other code it is kept as that reason only if
//! the broker closes the connection right after it, as it does with `ERROR limit` past
//! `--max-connections`. It never writes to the socket.

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
    // The last frame, when it was an id-less ERROR with a non-fatal code: the reason
    // the connection ended if the end of the stream comes next.
    let mut last_unmatched: Option<ClientError> = None;
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
        // Any frame after an id-less ERROR shows the connection outlived it.
        last_unmatched = None;
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
                // the reason. A non-fatal one cannot be matched to a call: it is the
                // reason only if the stream ends next (`limit` at --max-connections).
                let err = broker_error(&value);
                if err.code().is_none_or(ErrorCode::is_fatal) {
                    if let Ok(mut slot) = closed.lock() {
                        *slot = Some(err);
                    }
                } else {
                    last_unmatched = Some(err);
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
    // The broker's last word explains an end of stream or a reset that followed it
    // better than the bare I/O outcome; a frame we could not read is our own finding.
    let end = match (end, last_unmatched) {
        (None | Some(ClientError::Io(_)), Some(said)) => Some(said),
        (end, _) => end,
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
