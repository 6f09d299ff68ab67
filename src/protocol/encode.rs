//! Encoding the frames the broker writes.
//!
//! Owns the exact bytes of every broker -> client frame. Encoders append to a caller's
//! buffer (no allocation of their own) and splice raw JSON (`message`, `id`) unchanged.
//! Field order is fixed: `command` first, and a MESSAGE's `message` last.

use std::mem::MaybeUninit;

use super::error::ErrorCode;
use super::json::special_mask;
use super::parse::Raw;

/// Appends `s` as a JSON string literal (quotes and escapes included).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Channel names and most other strings need no escape: a check eight bytes at a
    // time, then a single copy.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `bytes` holds a `"`, a `\\` or a control character (below 0x20).
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    let word_at = |at: usize| super::json::word_at(bytes, at);
    let len = bytes.len();
    if len < 8 {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut at = 0;
    while at + 8 <= len {
        if special_mask(word_at(at)) != 0 {
            return true;
        }
        at += 8;
    }
    // The tail as the (overlapping) word that ends at the end.
    at < len && special_mask(word_at(len - 8)) != 0
}

/// Appends `,"id":<raw>` when the command had an id.
fn write_id(out: &mut Vec<u8>, id: Option<Raw<'_>>) {
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.get().as_bytes());
    }
}

/// Appends a decimal integer.
fn write_uint(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `{"command":"MESSAGE","channel":..,"message":<raw>}\n`: encoded once per publish and
/// shared by every receiver.
pub fn encode_message(out: &mut Vec<u8>, channel: &str, message: &str) {
    encode_message_bytes(out, channel, false, message.as_bytes());
}

/// [`encode_message`] for a message held as bytes that are known to be one JSON value
/// (a payload the parser checked), spliced without a second UTF-8 check. `plain` says
/// the channel is plain ([`crate::protocol::is_plain`]) and is copied without looking
/// for characters to escape.
#[inline(always)]
pub fn encode_message_bytes(out: &mut Vec<u8>, channel: &str, plain: bool, message: &[u8]) {
    if plain {
        return write_plain_message(out, channel, message);
    }
    out.extend_from_slice(MESSAGE_HEAD);
    write_channel(out, channel, plain);
    out.extend_from_slice(MESSAGE_MID);
    out.extend_from_slice(message);
    out.extend_from_slice(MESSAGE_TAIL);
}

const MESSAGE_HEAD: &[u8] = b"{\"command\":\"MESSAGE\",\"channel\":";
const MESSAGE_MID: &[u8] = b",\"message\":";
const MESSAGE_TAIL: &[u8] = b"}\n";

/// [`encode_message_bytes`] on a plain channel: the length is known, so the buffer is
/// grown once and the five pieces are copied into its spare capacity, with no growth
/// check per piece. Measured (callgrind, benches/instructions.rs): for the canonical
/// 16 B MESSAGE the piecewise `extend_from_slice` version cost about 89 instructions in
/// this function, this one 60 (on_frame 829 -> 806 per frame); copying the channel and
/// the message with [`copy_short`] instead of `memcpy` calls (and the chain from the
/// fan-out inlined) took on_frame 672 -> 643.
#[inline(always)]
fn write_plain_message(out: &mut Vec<u8>, channel: &str, message: &[u8]) {
    const HEAD: &[u8] = b"{\"command\":\"MESSAGE\",\"channel\":\"";
    const MID: &[u8] = b"\",\"message\":";
    let channel = channel.as_bytes();
    let len = HEAD.len() + channel.len() + MID.len() + message.len() + MESSAGE_TAIL.len();
    out.reserve(len);
    let start = out.len();
    let spare = &mut out.spare_capacity_mut()[..len];
    let (head, rest) = spare.split_at_mut(HEAD.len());
    head.write_copy_of_slice(HEAD);
    let (name, rest) = rest.split_at_mut(channel.len());
    copy_short(name, channel);
    let (mid, rest) = rest.split_at_mut(MID.len());
    mid.write_copy_of_slice(MID);
    let (body, tail) = rest.split_at_mut(message.len());
    copy_short(body, message);
    tail.write_copy_of_slice(MESSAGE_TAIL);
    // SAFETY: `spare` is the `len` bytes after the old length (`reserve` made room), and
    // the five pieces above cover all of them: every byte up to `start + len` is
    // initialised.
    unsafe { out.set_len(start + len) };
}

/// Copies `src` into `dst` (of the same length). A piece of 8 to 32 bytes (a channel
/// name, a short message) is copied as two overlapping words of 8 or 16 bytes, inline,
/// instead of through a call to `memcpy`, which costs more than the copy at that size.
#[inline(always)]
fn copy_short(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    let n = src.len();
    if n != dst.len() {
        dst.write_copy_of_slice(src); // panics, as the plain copy would
        return;
    }
    match (src.first_chunk::<16>(), src.last_chunk::<16>()) {
        (Some(first), Some(last)) if n <= 32 => {
            dst[..16].write_copy_of_slice(first);
            dst[n - 16..].write_copy_of_slice(last);
        }
        _ => match (src.first_chunk::<8>(), src.last_chunk::<8>()) {
            (Some(first), Some(last)) if n <= 16 => {
                dst[..8].write_copy_of_slice(first);
                dst[n - 8..].write_copy_of_slice(last);
            }
            _ => {
                dst.write_copy_of_slice(src);
            }
        },
    }
}

/// The length of [`encode_message_bytes`]'s frame (newline included) when it is known
/// without encoding: on a plain channel, which is copied as is. `None` otherwise.
#[inline]
pub fn message_len(channel: &str, plain: bool, message: &[u8]) -> Option<usize> {
    plain.then(|| {
        MESSAGE_HEAD.len()
            + channel.len()
            + 2
            + MESSAGE_MID.len()
            + message.len()
            + MESSAGE_TAIL.len()
    })
}

/// A channel as a JSON string: copied as is when `plain` ([`crate::protocol::is_plain`]:
/// nothing in it needs escaping), else through [`write_json_str`].
#[inline]
fn write_channel(out: &mut Vec<u8>, channel: &str, plain: bool) {
    debug_assert!(!plain || crate::protocol::is_plain(channel));
    if plain {
        out.push(b'"');
        out.extend_from_slice(channel.as_bytes());
        out.push(b'"');
    } else {
        write_json_str(out, channel);
    }
}

/// `SUBSCRIBED` / `UNSUBSCRIBED` replies: `reply` is the command name to write.
pub fn encode_subscription(
    out: &mut Vec<u8>,
    reply: &str,
    channel: &str,
    subscriptions: usize,
    id: Option<Raw<'_>>,
) {
    out.extend_from_slice(b"{\"command\":\"");
    out.extend_from_slice(reply.as_bytes());
    out.extend_from_slice(b"\",\"channel\":");
    write_json_str(out, channel);
    out.extend_from_slice(b",\"subscriptions\":");
    write_uint(out, subscriptions as u64);
    write_id(out, id);
    out.extend_from_slice(b"}\n");
}

/// `PUBLISHED` reply with the number of receivers; `plain` as for
/// [`encode_message_bytes`].
pub fn encode_published(
    out: &mut Vec<u8>,
    channel: &str,
    plain: bool,
    receivers: usize,
    id: Option<Raw<'_>>,
) {
    out.extend_from_slice(b"{\"command\":\"PUBLISHED\",\"channel\":");
    write_channel(out, channel, plain);
    out.extend_from_slice(b",\"receivers\":");
    write_uint(out, receivers as u64);
    write_id(out, id);
    out.extend_from_slice(b"}\n");
}

/// `PONG` reply.
pub fn encode_pong(out: &mut Vec<u8>, id: Option<Raw<'_>>) {
    out.extend_from_slice(b"{\"command\":\"PONG\"");
    write_id(out, id);
    out.extend_from_slice(b"}\n");
}

/// The fields of a `WELCOME` reply.
#[derive(Debug, Clone, Copy)]
pub struct Welcome<'a> {
    /// The broker's name.
    pub server: &'a str,
    /// The broker's version.
    pub version: &'a str,
    /// The broker's `--max-frame`.
    pub max_frame: usize,
    /// This connection's id.
    pub client_id: u64,
}

/// `WELCOME` reply to `HELLO`.
pub fn encode_welcome(out: &mut Vec<u8>, w: &Welcome<'_>, id: Option<Raw<'_>>) {
    out.extend_from_slice(b"{\"command\":\"WELCOME\",\"server\":");
    write_json_str(out, w.server);
    out.extend_from_slice(b",\"version\":");
    write_json_str(out, w.version);
    out.extend_from_slice(b",\"max_frame\":");
    write_uint(out, w.max_frame as u64);
    out.extend_from_slice(b",\"client_id\":");
    write_uint(out, w.client_id);
    write_id(out, id);
    out.extend_from_slice(b"}\n");
}

/// `ERROR` frame.
pub fn encode_error(out: &mut Vec<u8>, code: ErrorCode, text: &str, id: Option<Raw<'_>>) {
    out.extend_from_slice(b"{\"command\":\"ERROR\",\"code\":\"");
    out.extend_from_slice(code.as_str().as_bytes());
    out.extend_from_slice(b"\",\"error\":");
    write_json_str(out, text);
    write_id(out, id);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_json(bytes: &[u8]) -> serde_json::Value {
        assert_eq!(bytes.last(), Some(&b'\n'));
        serde_json::from_slice(bytes).expect("encoder wrote valid JSON")
    }

    #[test]
    fn needs_escape_finds_every_special_byte() {
        for len in 0..20 {
            for at in 0..len {
                for special in [0u8, 0x1f, b'"', b'\\'] {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = special;
                    assert!(needs_escape(&bytes), "{bytes:?}");
                }
                let mut bytes = vec![b'x'; len];
                bytes[at] = 0xc3;
                assert!(!needs_escape(&bytes));
            }
            assert!(!needs_escape(&vec![b' '; len]));
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, b"\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\"".to_vec());
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn message_splices_raw_text() {
        let mut out = Vec::new();
        encode_message(&mut out, "a.\"b", "1.0");
        assert_eq!(
            out,
            b"{\"command\":\"MESSAGE\",\"channel\":\"a.\\\"b\",\"message\":1.0}\n".to_vec()
        );
    }

    #[test]
    fn replies_are_valid_json_with_ids() {
        let id = Raw::trusted("[1,\"x\"]");
        let mut out = Vec::new();
        encode_published(&mut out, "c", true, 12345, Some(id));
        let v = as_json(&out);
        assert_eq!(v["receivers"], 12345);
        assert_eq!(v["id"], serde_json::json!([1, "x"]));
        out.clear();
        encode_welcome(
            &mut out,
            &Welcome {
                server: "b",
                version: "1",
                max_frame: 10,
                client_id: 0,
            },
            None,
        );
        let v = as_json(&out);
        assert_eq!(v["client_id"], 0);
        assert!(v.get("id").is_none());
        out.clear();
        encode_error(&mut out, ErrorCode::BadJson, "bad \"x\"", None);
        assert_eq!(as_json(&out)["code"], "bad_json");
        out.clear();
        encode_subscription(&mut out, "SUBSCRIBED", "a.*", 3, None);
        assert_eq!(as_json(&out)["subscriptions"], 3);
        out.clear();
        encode_pong(&mut out, Some(Raw::trusted("null")));
        assert_eq!(out, b"{\"command\":\"PONG\",\"id\":null}\n".to_vec());
    }

    #[test]
    fn a_plain_channel_is_written_as_the_escaping_path_writes_it() {
        for channel in ["a", "bench.pairs", "x.y~z_1-2:3", "\"q\"", "a\\b\n"] {
            let plain = crate::protocol::is_plain(channel);
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            encode_message_bytes(&mut fast, channel, plain, b"1");
            encode_message_bytes(&mut slow, channel, false, b"1");
            assert_eq!(fast, slow, "{channel}");
            assert_eq!(as_json(&fast)["channel"], channel);
            fast.clear();
            slow.clear();
            encode_published(&mut fast, channel, plain, 2, None);
            encode_published(&mut slow, channel, false, 2, None);
            assert_eq!(fast, slow, "{channel}");
        }
    }
}
