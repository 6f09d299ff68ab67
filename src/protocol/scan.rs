//! Frame scanning: finding where the next line ends in a read buffer.
//!
//! Owns the rule "a frame is the bytes before `\n`, a trailing `\r` dropped, at most
//! `max_frame` long". It only looks for the newline (memchr) and never parses JSON, so
//! an oversize frame is refused as soon as it is seen, without buffering it to its end.

/// The outcome of looking for one frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete line: `line` is the frame's byte range (no `\r\n`), `consumed` how many
    /// bytes to drop from the buffer, newline included.
    Frame {
        /// Start and end of the frame's bytes in the buffer.
        line: (usize, usize),
        /// Bytes to consume, the newline included.
        consumed: usize,
    },
    /// No newline yet and the buffer is within the limit: read more.
    Incomplete,
    /// The frame is longer than the limit (seen with or without its newline).
    TooLarge,
}

/// Looks for the first frame in `buf`. Frames longer than `max_frame` bytes (newline and
/// a preceding `\r` excluded) are reported as [`Scan::TooLarge`] as soon as more than
/// `max_frame + 1` bytes are buffered without a newline.
pub fn scan_frame(buf: &[u8], max_frame: usize) -> Scan {
    // Never search further than a legal frame could reach: max_frame bytes, an optional
    // '\r', and the '\n'.
    let window = buf.len().min(max_frame.saturating_add(2));
    match memchr::memchr(b'\n', &buf[..window]) {
        Some(nl) => {
            let end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > max_frame {
                Scan::TooLarge
            } else {
                Scan::Frame {
                    line: (0, end),
                    consumed: nl + 1,
                }
            }
        }
        None if buf.len() > max_frame.saturating_add(1) => Scan::TooLarge,
        None => Scan::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `input` into frames the way a connection does, returning the lines.
    fn frames(input: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<Scan>) {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match scan_frame(&input[pos..], max) {
                Scan::Frame { line, consumed } => {
                    out.push(input[pos + line.0..pos + line.1].to_vec());
                    pos += consumed;
                }
                other => return (out, Some(other)),
            }
        }
    }

    #[test]
    fn splits_joined_frames_and_strips_cr() {
        let (f, rest) = frames(b"{\"a\":1}\r\n\n{\"b\":2}\npartial", 100);
        assert_eq!(
            f,
            vec![b"{\"a\":1}".to_vec(), b"".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(rest, Some(Scan::Incomplete));
    }

    #[test]
    fn frame_at_exact_limit_is_accepted() {
        let mut line = vec![b'x'; 10];
        line.push(b'\n');
        assert!(matches!(scan_frame(&line, 10), Scan::Frame { .. }));
        line.insert(10, b'\r');
        assert!(matches!(scan_frame(&line, 10), Scan::Frame { .. }));
        assert_eq!(scan_frame(&[b'x'; 12], 10), Scan::TooLarge);
        assert_eq!(scan_frame(&[b'x'; 11], 10), Scan::Incomplete);
        let mut long = vec![b'x'; 11];
        long.push(b'\n');
        assert_eq!(scan_frame(&long, 10), Scan::TooLarge);
    }

    #[test]
    fn every_split_point_yields_the_same_frames() {
        let input = b"{\"command\":\"PING\"}\n{\"command\":\"PUBLISH\",\"channel\":\"a\",\"message\":\"x\\ny\"}\r\n\n";
        let (whole, _) = frames(input, 1024);
        for cut in 0..=input.len() {
            // Feed the first part, consume what is complete, then append the rest.
            let mut buf = input[..cut].to_vec();
            let mut got = Vec::new();
            let feed = |buf: &mut Vec<u8>, got: &mut Vec<Vec<u8>>| {
                while let Scan::Frame { line, consumed } = scan_frame(buf, 1024) {
                    got.push(buf[line.0..line.1].to_vec());
                    buf.drain(..consumed);
                }
            };
            feed(&mut buf, &mut got);
            buf.extend_from_slice(&input[cut..]);
            feed(&mut buf, &mut got);
            assert_eq!(got, whole, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }
}
