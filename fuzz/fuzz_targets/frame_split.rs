//! Splitting: a byte stream cut at arbitrary offsets gives the same frames, and the same
//! `TooLarge` decision, as the whole stream scanned at once.
//!
//! The split side feeds the pieces the way a connection does: append what was read,
//! take every complete frame with `scan_frame`, drop the bytes consumed, read again; it
//! stops at the first `TooLarge` (the broker closes the connection there).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pubsub::protocol::{scan_frame, Scan};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The frame limit (small, so that both sides of it are reached).
    max_frame: u16,
    /// Lengths of the pieces the stream arrives in (the rest comes last).
    cuts: Vec<u16>,
    stream: Vec<u8>,
}

/// How a sequence of frames ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Waiting for more, with these bytes buffered.
    Incomplete(Vec<u8>),
    /// The connection would be closed.
    TooLarge,
}

fuzz_target!(|input: Input| {
    // Mostly tiny limits (every byte matters), sometimes larger ones.
    let max = match input.max_frame % 4 {
        0 => usize::from(input.max_frame >> 2),
        _ => usize::from(input.max_frame % 24),
    };
    let stream = &input.stream;

    // The whole stream at once.
    let mut whole = Vec::new();
    let mut pos = 0;
    let whole_end = loop {
        match scan_frame(&stream[pos..], max) {
            Scan::Frame { line, consumed } => {
                check_frame(&stream[pos..], line, consumed, max);
                whole.push(stream[pos + line.0..pos + line.1].to_vec());
                pos += consumed;
            }
            Scan::Incomplete => break End::Incomplete(stream[pos..].to_vec()),
            Scan::TooLarge => break End::TooLarge,
        }
    };

    // The same stream in pieces.
    let mut split = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = &stream[..];
    let mut cuts = input.cuts.iter().map(|&c| usize::from(c % 64));
    let split_end = 'feed: loop {
        let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match scan_frame(&buf, max) {
                Scan::Frame { line, consumed } => {
                    check_frame(&buf, line, consumed, max);
                    split.push(buf[line.0..line.1].to_vec());
                    buf.drain(..consumed);
                }
                Scan::Incomplete => break,
                Scan::TooLarge => break 'feed End::TooLarge,
            }
        }
        // Incomplete: a connection may hold at most max_frame + 1 bytes (a frame and
        // its '\r') while it waits for the newline.
        assert!(buf.len() <= max + 1, "buffered {} > max+1", buf.len());
        if rest.is_empty() {
            break End::Incomplete(buf.clone());
        }
    };

    assert_eq!(split, whole, "frames differ (max {max})");
    assert_eq!(split_end, whole_end, "end differs (max {max})");
});

/// What every `Scan::Frame` must satisfy: the line is within the buffer and the limit,
/// holds no newline, and is followed by `\n` or `\r\n` that `consumed` covers exactly.
fn check_frame(buf: &[u8], line: (usize, usize), consumed: usize, max: usize) {
    let (start, end) = line;
    assert_eq!(start, 0);
    assert!(end <= max, "frame of {end} bytes over max {max}");
    assert!(consumed <= buf.len());
    assert!(!buf[start..end].contains(&b'\n'));
    assert_eq!(buf[consumed - 1], b'\n');
    match consumed - end {
        1 => {}
        2 => assert_eq!(buf[end], b'\r'),
        n => panic!("{n} bytes between the frame and its end"),
    }
    // A '\r' before the newline is never left in the frame.
    if consumed - end == 1 && end > 0 {
        assert_ne!(buf[end - 1], b'\r');
    }
}
