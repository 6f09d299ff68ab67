//! Core NATS text protocol, client side: `CONNECT` (verbose and pedantic off), `SUB`,
//! `PUB`, `PING`/`PONG`, and the server's `INFO`, `MSG`, `PING`, `+OK`, `-ERR`.
//! With `verbose:false` a `SUB` has no reply, so a subscription counts as confirmed when
//! the `PONG` to the `PING` sent right after it arrives (the server answers in order).

use super::{parse_decimal, push_decimal, Decoded, Event, FrameError};

const NAME: &str = "nats";

/// `CONNECT` with the options every run uses; `echo:false` so a connection never receives
/// its own messages.
pub fn connect(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"loadgen\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1,\"echo\":false}\r\n",
    );
}

/// `SUB channel 1` followed by `PING`: the `PONG` confirms the subscription.
pub fn subscribe(out: &mut Vec<u8>, channel: &[u8]) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(channel);
    out.extend_from_slice(b" 1\r\nPING\r\n");
}

/// `PUB channel len` and the payload.
pub fn publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(channel);
    out.push(b' ');
    push_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `PING`.
pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// `PONG`, the answer to a server `PING` (the server disconnects clients that never answer).
pub fn pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

/// Cuts one operation off `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return Ok(None);
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let after_line = nl + 1;
    let mut fields = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty());
    let op = fields.next().unwrap_or_default();
    if op.eq_ignore_ascii_case(b"MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let mut args = [&b""[..]; 4];
        let mut n = 0;
        for f in fields {
            let slot = args
                .get_mut(n)
                .ok_or_else(|| FrameError::new(NAME, "too many MSG arguments"))?;
            *slot = f;
            n += 1;
        }
        if n < 3 {
            return Err(FrameError::new(NAME, "too few MSG arguments"));
        }
        let len =
            parse_decimal(args[n - 1]).ok_or_else(|| FrameError::new(NAME, "bad MSG size"))?;
        let len = usize::try_from(len).map_err(|_| FrameError::new(NAME, "MSG too long"))?;
        let end = after_line + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(FrameError::new(NAME, "MSG payload not followed by CRLF"));
        }
        return Ok(Some((Event::Message(&buf[after_line..end]), end + 2)));
    }
    let event = if op.eq_ignore_ascii_case(b"PING") {
        Event::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Event::Pong
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        let text = String::from_utf8_lossy(&line[4..]).trim().to_string();
        let code = if text.to_ascii_lowercase().contains("maximum connections") {
            "limit"
        } else {
            "error"
        };
        Event::ServerError {
            code: code.into(),
            text,
        }
    } else if op.eq_ignore_ascii_case(b"+OK") || op.eq_ignore_ascii_case(b"INFO") {
        Event::Other
    } else {
        return Err(FrameError::new(NAME, "unknown operation"));
    };
    Ok(Some((event, after_line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_with_and_without_reply() {
        let plain = b"MSG bench.0 1 5\r\nab\r\nc\r\n";
        assert_eq!(
            decode(plain),
            Ok(Some((Event::Message(b"ab\r\nc"), plain.len())))
        );
        let reply = b"MSG bench.0 1 _INBOX.x 2\r\nhi\r\nPING\r\n";
        assert_eq!(decode(reply), Ok(Some((Event::Message(b"hi"), 30))));
        assert_eq!(decode(&reply[30..]), Ok(Some((Event::Ping, 6))));
    }

    #[test]
    fn control_ops() {
        assert_eq!(decode(b"INFO {\"x\":1}\r\n"), Ok(Some((Event::Other, 14))));
        assert_eq!(decode(b"pong\r\n"), Ok(Some((Event::Pong, 6))));
        let Ok(Some((Event::ServerError { code, .. }, _))) =
            decode(b"-ERR 'maximum connections exceeded'\r\n")
        else {
            panic!("expected an error event");
        };
        assert_eq!(code, "limit");
        assert!(decode(b"MSG a 1\r\n").is_err());
        assert!(decode(b"MSG a 1 x\r\n").is_err());
        assert!(decode(b"BOGUS\r\n").is_err());
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        publish(&mut out, b"a.b", b"xyz");
        assert_eq!(out, b"PUB a.b 3\r\nxyz\r\n");
    }
}
