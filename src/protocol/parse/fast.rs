//! The PUBLISH fast path: a compact `PUBLISH` frame recognised in one pass.
//!
//! Owns the shortcut for the frame nearly every client sends: a compact object (no
//! whitespace) whose keys are among `command` (exactly `"PUBLISH"`), `channel` (a string
//! without escapes), `message`, `ack` and `id`, each at most once, in any order. It walks
//! the line once: the keys are compared as constants, the channel and a string message
//! are skipped sixteen bytes at a time (`protocol::block`) while noting whether any
//! byte is non-ASCII, and the [`Publish`] is built directly (a few words, not a whole
//! [`Frame`]: the JSON codec takes it before asking for a `Frame`, so the common frame
//! is never moved around as the large `Command` enum). Anything else (whitespace, another key, a repeated key, a
//! lower-case command, an escaped channel, invalid JSON) returns `None`, and the general
//! parser decides, so the fast path changes no outcome: it accepts a subset of what the
//! general path accepts and builds the same [`Frame`] for it (property-tested in
//! `parse/tests.rs`).

use std::borrow::Cow;

use super::{Command, Frame, Raw};
use crate::protocol::{block, channel, json};

const HIGH: u64 = 0x8080_8080_8080_8080;

/// A string starting at `b[i]` (a `"`): the index after its closing quote, whether it
/// holds escapes, and whether every byte of it is ASCII. `None` if it is not a valid
/// JSON string.
#[inline(always)]
fn string(b: &[u8], i: usize) -> Option<(usize, bool, bool)> {
    let mut j = i + 1;
    let mut ascii = true;
    loop {
        // Sixteen bytes at a time while there are that many, then eight.
        while let Some(block) = b.get(j..).and_then(<[u8]>::first_chunk::<16>) {
            let stops = block::string_stops(block);
            if stops != 0 {
                j += stops.trailing_zeros() as usize;
                break;
            }
            j += 16;
        }
        while j + 8 <= b.len() {
            let w = json::word_at(b, j);
            let mask = json::special_mask(w) | (w & HIGH);
            if mask != 0 {
                j += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        match *b.get(j)? {
            b'"' => return Some((j + 1, false, ascii)),
            c if c >= 0x80 => {
                ascii = false;
                j += 1;
            }
            // An escape or a control character: the general string scanner decides
            // (rare in a PUBLISH; the UTF-8 check is then done on the whole value).
            b'\\' => {
                let (end, escaped) = json::skip_string(b, i).ok()?;
                return Some((end, escaped, false));
            }
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// The channel's string starting at `b[i]` (a `"`), scanned for the end quote and for
/// the plain-channel rules at once ([`channel::is_plain`]): the index after its closing
/// quote and whether it is plain. `None` when a byte other than the closing quote stops
/// a plain name (an escape, a control, a space, non-ASCII, `*`, `>`): the caller then
/// scans it as any string and checks it the general way.
#[inline(always)]
fn plain_channel(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let start = i + 1;
    let mut j = start;
    let mut dot_before = false;
    let mut double_dot = false;
    // Sixteen bytes at a time while there are that many (a channel that ends the line
    // is in an invalid frame anyway), then the eight-byte loop below.
    while let Some(block) = b.get(j..).and_then(<[u8]>::first_chunk::<16>) {
        let (bad, mut dots) = block::plain_stops(block);
        let stop = bad.trailing_zeros();
        if stop < 16 {
            // Only the dots before the stopping byte belong to the name.
            dots &= (1u32 << stop) - 1;
        }
        double_dot |= dots & (dots >> 1) != 0 || (dot_before && dots & 1 != 0);
        if stop < 16 {
            j += stop as usize;
            if b[j] != b'"' {
                return None;
            }
            return Some((j + 1, plain_end(b, start, j, double_dot)));
        }
        dot_before = dots >> 15 != 0;
        j += 16;
    }
    loop {
        if j + 8 > b.len() {
            // The last bytes of the line, one at a time (a channel ends a line only in
            // a frame that is invalid anyway).
            loop {
                match *b.get(j)? {
                    b'"' => break,
                    c if c <= b' ' || c >= 0x7f || matches!(c, b'*' | b'>' | b'\\') => return None,
                    c => double_dot |= c == b'.' && b[j - 1] == b'.',
                }
                j += 1;
            }
            break;
        }
        let (bad, mut dots) = channel::plain_word(json::word_at(b, j));
        let stop = bad.trailing_zeros() / 8;
        if stop < 8 {
            // Only the dots before the stopping byte belong to the name.
            dots &= (1u64 << (stop * 8)) - 1;
        }
        double_dot |= dots & (dots >> 8) != 0 || (dot_before && dots & 0x80 != 0);
        if stop < 8 {
            j += stop as usize;
            if b[j] != b'"' {
                return None;
            }
            break;
        }
        dot_before = dots >> 63 != 0;
        j += 8;
    }
    Some((j + 1, plain_end(b, start, j, double_dot)))
}

/// Whether the channel `b[start..end]`, whose bytes were all plain, is: no two dots in
/// a row (`double_dot`), 1..=256 bytes, no dot first or last.
#[inline(always)]
fn plain_end(b: &[u8], start: usize, end: usize, double_dot: bool) -> bool {
    let len = end - start;
    !double_dot
        && (1..=channel::MAX_CHANNEL_LEN).contains(&len)
        && b[start] != b'.'
        && b[end - 1] != b'.'
}

/// The text of `b[start..end]`. `ascii` says the caller's scan saw only ASCII bytes
/// there; anything else is checked as UTF-8 (the general path would refuse the frame as
/// `bad_json` otherwise).
#[inline(always)]
fn text(b: &[u8], start: usize, end: usize, ascii: bool) -> Option<&str> {
    let bytes = b.get(start..end)?;
    if !ascii {
        return std::str::from_utf8(bytes).ok();
    }
    debug_assert!(bytes.is_ascii());
    // SAFETY: every byte of `bytes` is below 0x80 (the scan that set `ascii` looked at
    // each one: `string` stops on every byte with its high bit set, `value` calls
    // `is_ascii`), and ASCII is valid UTF-8. Measured (callgrind,
    // benches/instructions.rs): `from_utf8` on the channel and message of the canonical
    // 16 B PUBLISH cost 259 of the fast path's 640 instructions per frame; the scan
    // already knows the answer.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// A JSON value starting at `b[i]`: its end, whether it is a string with escapes, and
/// whether it is all ASCII.
#[inline(always)]
fn value(b: &[u8], i: usize) -> Option<(usize, bool, bool)> {
    if b.get(i) == Some(&b'"') {
        return string(b, i);
    }
    // The frame's own object is depth 1, as in the general scanner.
    let (end, escaped) = json::skip_value(b, i, 1).ok()?;
    Some((end, escaped, b.get(i..end)?.is_ascii()))
}

/// A compact `PUBLISH` as the fast path read it: what [`Command::Publish`] holds, and
/// the frame's `id`.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The `id` field exactly as sent, if present.
    pub id: Option<Raw<'a>>,
    /// Target channel (no escapes in the frame; validated only when `plain`).
    pub channel: &'a str,
    /// The message as raw JSON text.
    pub message: Raw<'a>,
    /// Whether to reply `PUBLISHED`.
    pub ack: bool,
    /// The channel is plain ([`crate::protocol::is_plain`]).
    pub plain: bool,
}

impl<'a> Publish<'a> {
    /// The same frame as the general parser builds.
    pub(super) fn into_frame(self) -> Frame<'a> {
        Frame {
            id: self.id,
            command: Command::Publish {
                channel: Cow::Borrowed(self.channel),
                message: self.message,
                ack: self.ack,
                plain: self.plain,
            },
        }
    }
}

/// The publish, if `line` is a compact `PUBLISH` this path knows (see the module
/// documentation); `None` means "ask the general parser", never "invalid".
#[inline]
pub fn publish(line: &[u8]) -> Option<Publish<'_>> {
    match canonical(line) {
        Some(p) => Some(p),
        None => any_order(line),
    }
}

/// What clients built for speed send: `{"command":"PUBLISH","channel":"…","message":…}`
/// with an optional `,"ack":false` or `,"ack":true` last. Three constant compares and
/// two value scans.
#[inline(always)]
fn canonical(b: &[u8]) -> Option<Publish<'_>> {
    const HEAD: &[u8] = b"{\"command\":\"PUBLISH\",\"channel\":\"";
    const MESSAGE: &[u8] = b",\"message\":";
    if !b.starts_with(HEAD) {
        return None;
    }
    let (c_end, c_ascii, plain) = match plain_channel(b, HEAD.len() - 1) {
        Some((end, plain)) => (end, true, plain),
        None => match string(b, HEAD.len() - 1)? {
            (_, true, _) => return None,
            (end, false, ascii) => (end, ascii, false),
        },
    };
    if !b.get(c_end..)?.starts_with(MESSAGE) {
        return None;
    }
    let m_start = c_end + MESSAGE.len();
    let (m_end, m_escaped, m_ascii) = value(b, m_start)?;
    let ack = ack_tail(b.get(m_end..)?)?;
    build(
        b,
        (HEAD.len(), c_end - 1, c_ascii),
        (m_start, m_end, m_escaped, m_ascii),
        ack,
        None,
        Some(plain),
    )
}

/// What follows the message in a canonical frame: `}` (no `ack`: true), or
/// `,"ack":false}` or `,"ack":true}`; `None` for anything else. The length tells which
/// one it can be, and each is compared as at most two overlapping words (measured: the
/// `match` on three byte strings cost 27 instructions).
#[inline(always)]
fn ack_tail(tail: &[u8]) -> Option<bool> {
    const FALSE: &[u8; 13] = b",\"ack\":false}";
    const TRUE: &[u8; 12] = b",\"ack\":true}";
    let words = |t: &[u8], want: &[u8]| {
        t.first_chunk::<8>() == want.first_chunk::<8>()
            && t.last_chunk::<8>() == want.last_chunk::<8>()
    };
    match tail.len() {
        1 => (tail[0] == b'}').then_some(true),
        13 => words(tail, FALSE).then_some(false),
        12 => words(tail, TRUE).then_some(true),
        _ => None,
    }
}

/// The publish from the ranges the scan found: (start, end, ascii) of the channel's text,
/// (start, end, escaped, ascii) of `message` and `id`.
#[inline(always)]
fn build(
    b: &[u8],
    channel: (usize, usize, bool),
    message: (usize, usize, bool, bool),
    ack: bool,
    id: Option<(usize, usize, bool, bool)>,
    plain: Option<bool>,
) -> Option<Publish<'_>> {
    let id = match id {
        Some((start, end, escaped, ascii)) => Some(Raw {
            text: text(b, start, end, ascii)?,
            escaped,
        }),
        None => None,
    };
    let channel = text(b, channel.0, channel.1, channel.2)?;
    Some(Publish {
        id,
        plain: plain.unwrap_or_else(|| channel::is_plain(channel)),
        channel,
        message: Raw {
            text: text(b, message.0, message.1, message.3)?,
            escaped: message.2,
        },
        ack,
    })
}

/// Any order of the known keys, each at most once, no whitespace.
#[inline(never)]
fn any_order(b: &[u8]) -> Option<Publish<'_>> {
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    let mut i = 1;
    let mut command = false;
    // (start, end, ascii) of the channel's text; (start, end, escaped, ascii) of values.
    let mut channel: Option<(usize, usize, bool)> = None;
    let mut message: Option<(usize, usize, bool, bool)> = None;
    let mut ack: Option<bool> = None;
    let mut id: Option<(usize, usize, bool, bool)> = None;
    loop {
        let rest = b.get(i..)?;
        if rest.starts_with(b"\"command\":\"PUBLISH\"") && !command {
            command = true;
            i += 19;
        } else if rest.starts_with(b"\"channel\":\"") && channel.is_none() {
            let start = i + 10;
            let (end, escaped, ascii) = string(b, start)?;
            if escaped {
                return None;
            }
            channel = Some((start + 1, end - 1, ascii));
            i = end;
        } else if rest.starts_with(b"\"message\":") && message.is_none() {
            let start = i + 10;
            let (end, escaped, ascii) = value(b, start)?;
            message = Some((start, end, escaped, ascii));
            i = end;
        } else if rest.starts_with(b"\"ack\":") && ack.is_none() {
            let v = &rest[6..];
            let (value, len) = if v.starts_with(b"false") {
                (false, 5)
            } else if v.starts_with(b"true") || v.starts_with(b"null") {
                (true, 4)
            } else {
                return None;
            };
            ack = Some(value);
            i += 6 + len;
        } else if rest.starts_with(b"\"id\":") && id.is_none() {
            let start = i + 5;
            let (end, escaped, ascii) = value(b, start)?;
            id = Some((start, end, escaped, ascii));
            i = end;
        } else {
            return None;
        }
        match b.get(i)? {
            b',' => i += 1,
            b'}' if i + 1 == b.len() => break,
            _ => return None,
        }
    }
    let (Some(channel), Some(message), true) = (channel, message, command) else {
        return None;
    };
    build(b, channel, message, ack.unwrap_or(true), id, None)
}
