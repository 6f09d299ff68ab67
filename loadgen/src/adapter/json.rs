//! Our broker's newline-delimited JSON protocol, client side (also spoken by
//! `loadgen relay`). MESSAGE frames are cut with memchr, never serde-parsed: loadgen's
//! payloads are plain JSON strings, so the payload is the text between the quotes that
//! follow `"message":`. Rare frames (replies, errors) go through serde.

use super::{Decoded, Event, FrameError};
use memchr::memmem::Finder;
use std::sync::{LazyLock, OnceLock};

/// How our broker starts every MESSAGE frame (field order: command, channel, message).
const MESSAGE_PREFIX: &[u8] = b"{\"command\":\"MESSAGE\",\"channel\":\"";
/// What follows the channel's closing quote in that order.
const MESSAGE_INFIX: &[u8] = b",\"message\":\"";

/// Searchers built once: building a memmem searcher costs more than using it.
static FIND_MESSAGE_COMMAND: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"MESSAGE\""));
static FIND_MESSAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"message\":"));

const NAME: &str = "json";

/// The HELLO every connection sends: names the client and turns echo off.
const HELLO: &[u8] = b"{\"command\":\"HELLO\",\"name\":\"loadgen\",\"echo\":false}\n";

/// The HELLO with `--token`, when one was given: set once, before any connection opens.
static HELLO_WITH_TOKEN: OnceLock<Vec<u8>> = OnceLock::new();

/// Makes every connection's HELLO carry `token` (for a broker started with `--token`).
/// Call before the first connection opens; later calls change nothing.
pub fn set_token(token: &str) {
    let _ = HELLO_WITH_TOKEN.set(hello_with_token(token));
}

fn hello_with_token(token: &str) -> Vec<u8> {
    let mut line = HELLO.strip_suffix(b"}\n").unwrap_or(HELLO).to_vec();
    line.extend_from_slice(b",\"token\":");
    // A string always serialises.
    line.extend_from_slice(&serde_json::to_vec(token).unwrap_or_default());
    line.extend_from_slice(b"}\n");
    line
}

/// Sent once per connection, before anything else: names the client, turns echo off,
/// and carries the `--token` if one was given (a `--token` broker refuses anything else
/// as the first frame).
pub fn hello(out: &mut Vec<u8>) {
    out.extend_from_slice(HELLO_WITH_TOKEN.get().map_or(HELLO, Vec::as_slice));
}

/// `SUBSCRIBE`; the broker answers `SUBSCRIBED`.
pub fn subscribe(out: &mut Vec<u8>, channel: &[u8]) {
    out.extend_from_slice(b"{\"command\":\"SUBSCRIBE\",\"channel\":\"");
    out.extend_from_slice(channel);
    out.extend_from_slice(b"\"}\n");
}

/// `PUBLISH` with `ack:false`: no reply, so the publisher reads nothing per message.
/// `payload` must need no JSON escaping (loadgen's stamps never do).
pub fn publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"{\"command\":\"PUBLISH\",\"channel\":\"");
    out.extend_from_slice(channel);
    out.extend_from_slice(b"\",\"message\":\"");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\",\"ack\":false}\n");
}

/// `PING`; the broker answers `PONG`.
pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"command\":\"PING\"}\n");
}

/// The fields of a non-MESSAGE frame that loadgen looks at.
#[derive(serde::Deserialize)]
struct Reply {
    command: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Cuts one line off `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return Ok(None);
    };
    let line = &buf[..end];
    let used = end + 1;
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Some((Event::Other, used)));
    }
    if let Some(payload) = fast_message_payload(line) {
        return Ok(Some((Event::Message(payload), used)));
    }
    if FIND_MESSAGE_COMMAND.find(line).is_some() {
        if let Some(payload) = message_payload(line) {
            return Ok(Some((Event::Message(payload), used)));
        }
    }
    let reply: Reply = serde_json::from_slice(line)
        .map_err(|_| FrameError::new(NAME, "line is not a JSON reply object"))?;
    let event = match reply.command.to_ascii_uppercase().as_str() {
        "SUBSCRIBED" => Event::Subscribed,
        "PONG" => Event::Pong,
        "ERROR" => Event::ServerError {
            code: reply.code.unwrap_or_default(),
            text: reply.error.unwrap_or_default(),
        },
        // A MESSAGE whose payload is not a plain string: not one of ours, but a message.
        "MESSAGE" => Event::Message(b""),
        _ => Event::Other,
    };
    Ok(Some((event, used)))
}

/// The payload of a MESSAGE frame in our broker's field order, found with two memchr
/// calls; `None` sends the frame down the general path.
fn fast_message_payload(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(MESSAGE_PREFIX)?;
    let channel_end = memchr::memchr(b'"', rest)?;
    let body = rest[channel_end + 1..].strip_prefix(MESSAGE_INFIX)?;
    let close = memchr::memchr2(b'"', b'\\', body)?;
    let tail = &body[close..];
    // Exactly `"}` (or `"}\r`) must follow, else the frame has escapes or more fields.
    (tail == b"\"}" || tail == b"\"}\r").then_some(&body[..close])
}

/// The text of a string-valued `"message"` field, without its quotes.
fn message_payload(line: &[u8]) -> Option<&[u8]> {
    let key = FIND_MESSAGE_KEY.find(line)?;
    let rest = &line[key + b"\"message\":".len()..];
    let skip = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &rest[skip..];
    if rest.first() != Some(&b'"') {
        return None;
    }
    let body = &rest[1..];
    let close = memchr::memchr2(b'"', b'\\', body)?;
    if body[close] == b'\\' {
        // Escaped text is never one of our stamps; let serde handle the frame.
        return None;
    }
    Some(&body[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_in_any_field_order() {
        let frame = b"{\"message\":\"abc\",\"channel\":\"x\",\"command\":\"MESSAGE\"}\n";
        assert_eq!(
            decode(frame),
            Ok(Some((Event::Message(b"abc"), frame.len())))
        );
        let spaced = b"{ \"command\" : \"MESSAGE\", \"channel\":\"x\", \"message\": \"abc\" }\r\n";
        assert_eq!(
            decode(spaced),
            Ok(Some((Event::Message(b"abc"), spaced.len())))
        );
    }

    #[test]
    fn replies_and_errors() {
        let two = b"{\"command\":\"SUBSCRIBED\",\"channel\":\"a\",\"subscriptions\":1}\n{\"command\":\"ERROR\",\"code\":\"limit\",\"error\":\"too many\"}\n";
        let (event, used) = decode(two).unwrap().unwrap();
        assert_eq!(event, Event::Subscribed);
        let (event, rest) = decode(&two[used..]).unwrap().unwrap();
        assert_eq!(
            event,
            Event::ServerError {
                code: "limit".into(),
                text: "too many".into()
            }
        );
        assert_eq!(used + rest, two.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"not json\n").is_err());
        assert_eq!(decode(b"\n"), Ok(Some((Event::Other, 1))));
    }

    #[test]
    fn hello_carries_the_token_escaped() {
        let line = hello_with_token("s3\"cr\\et");
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["command"], "HELLO");
        assert_eq!(v["echo"], false);
        assert_eq!(v["token"], "s3\"cr\\et");
        let mut plain = Vec::new();
        hello(&mut plain);
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v.get("token"), None);
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        publish(&mut out, b"bench.0", b"xyz");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["command"], "PUBLISH");
        assert_eq!(v["message"], "xyz");
        assert_eq!(v["ack"], false);
    }
}
