//! Redis RESP2 pub/sub, client side: `SUBSCRIBE`, `PUBLISH`, `PING`, and the pushes a
//! subscribed connection receives (`message`, `subscribe`, `pong`). Arrays are decoded
//! without allocating: only the first three flat elements are kept.

use super::{parse_decimal, push_decimal, Decoded, Event, FrameError};

const NAME: &str = "redis";

/// Longest array loadgen expects from a pub/sub server (`message` pushes have 3).
const MAX_ELEMENTS: usize = 3;

fn bulk(out: &mut Vec<u8>, item: &[u8]) {
    out.push(b'$');
    push_decimal(out, item.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(item);
    out.extend_from_slice(b"\r\n");
}

/// `SUBSCRIBE channel`; confirmed by a `subscribe` push.
pub fn subscribe(out: &mut Vec<u8>, channel: &[u8]) {
    out.extend_from_slice(b"*2\r\n");
    bulk(out, b"SUBSCRIBE");
    bulk(out, channel);
}

/// `PUBLISH channel payload`; Redis always answers with an integer (receivers).
pub fn publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    bulk(out, channel);
    bulk(out, payload);
}

/// `PING`: `+PONG` when not subscribed, a `pong` push when subscribed.
pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
}

/// One flat RESP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer,
    Bulk(&'a [u8]),
    Nil,
}

/// Finds the `\r\n`-terminated line at `buf[from..]`: (line, index after the CRLF).
fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let nl = memchr::memchr(b'\n', rest)?;
    let text = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    Some((text, from + nl + 1))
}

/// Parses one flat value at `buf[at..]`; `Ok(None)` when incomplete.
fn item(buf: &[u8], at: usize) -> Result<Option<(Item<'_>, usize)>, FrameError> {
    let Some((text, next)) = line(buf, at) else {
        return Ok(None);
    };
    let (&kind, body) = text
        .split_first()
        .ok_or_else(|| FrameError::new(NAME, "empty line"))?;
    match kind {
        b'+' => Ok(Some((Item::Simple(body), next))),
        b'-' => Ok(Some((Item::Error(body), next))),
        b':' => Ok(Some((Item::Integer, next))),
        b'$' => {
            if body == b"-1" {
                return Ok(Some((Item::Nil, next)));
            }
            let len =
                parse_decimal(body).ok_or_else(|| FrameError::new(NAME, "bad bulk length"))?;
            let len = usize::try_from(len).map_err(|_| FrameError::new(NAME, "bulk too long"))?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(FrameError::new(NAME, "bulk not followed by CRLF"));
            }
            Ok(Some((Item::Bulk(&buf[next..end]), end + 2)))
        }
        _ => Err(FrameError::new(NAME, "unexpected type byte")),
    }
}

/// Cuts one reply or push off `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.first() != Some(&b'*') {
        let Some((value, used)) = item(buf, 0)? else {
            return Ok(None);
        };
        let event = match value {
            Item::Simple(s) if s.eq_ignore_ascii_case(b"PONG") => Event::Pong,
            Item::Error(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                // Redis answers a connection over `maxclients` with this error, then closes.
                let code = if text.contains("max number of clients") {
                    "limit"
                } else {
                    "error"
                };
                Event::ServerError {
                    code: code.into(),
                    text,
                }
            }
            _ => Event::Other,
        };
        return Ok(Some((event, used)));
    }
    let Some((head, mut at)) = line(buf, 0) else {
        return Ok(None);
    };
    let count =
        parse_decimal(&head[1..]).ok_or_else(|| FrameError::new(NAME, "bad array length"))?;
    let mut items = [Item::Nil; MAX_ELEMENTS];
    for i in 0..count {
        let Some((value, next)) = item(buf, at)? else {
            return Ok(None);
        };
        if let Some(slot) = items.get_mut(i as usize) {
            *slot = value;
        }
        at = next;
    }
    let event = match items {
        [Item::Bulk(kind), _, Item::Bulk(payload)] if kind == b"message" => Event::Message(payload),
        [Item::Bulk(kind), _, _] if kind == b"subscribe" => Event::Subscribed,
        [Item::Bulk(kind), _, _] if kind == b"pong" => Event::Pong,
        _ => Event::Other,
    };
    Ok(Some((event, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes() {
        let frame = b"*3\r\n$7\r\nmessage\r\n$7\r\nbench.0\r\n$5\r\nhe\r\nl\r\n";
        assert_eq!(
            decode(frame),
            Ok(Some((Event::Message(b"he\r\nl"), frame.len())))
        );
        let sub = b"*3\r\n$9\r\nsubscribe\r\n$7\r\nbench.0\r\n:1\r\n";
        assert_eq!(decode(sub), Ok(Some((Event::Subscribed, sub.len()))));
        let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert_eq!(decode(pong), Ok(Some((Event::Pong, pong.len()))));
    }

    #[test]
    fn simple_replies() {
        assert_eq!(decode(b"+PONG\r\n:3"), Ok(Some((Event::Pong, 7))));
        assert_eq!(decode(b":3\r\n"), Ok(Some((Event::Other, 4))));
        assert_eq!(
            decode(b"-ERR nope\r\n"),
            Ok(Some((
                Event::ServerError {
                    code: "error".into(),
                    text: "ERR nope".into()
                },
                11
            )))
        );
        assert!(decode(b"?what\r\n").is_err());
        assert!(decode(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        publish(&mut out, b"c", b"xy");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nxy\r\n");
    }
}
