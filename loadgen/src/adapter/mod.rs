//! Protocol adapters: how each target (our JSON broker, Redis, NATS, MQTT) spells
//! "connect", "subscribe", "publish" and "ping", and how its replies are cut into frames.
//! Owns bytes only: adapters never touch sockets, clocks or statistics.
//!
//! Decoders follow "check before you parse": `decode` returns `Ok(None)` until a whole
//! frame is buffered, then the event and the number of bytes it used.

pub mod json;
pub mod mqtt;
pub mod nats;
pub mod redis;

use thiserror::Error;

/// Which wire protocol a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Our broker's newline-delimited JSON (and `loadgen relay`).
    Json,
    /// Redis RESP2 pub/sub.
    Redis,
    /// Core NATS text protocol.
    Nats,
    /// MQTT 3.1.1, QoS 0.
    Mqtt,
}

/// One decoded frame from a server, reduced to what loadgen acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A delivered message; the slice is the payload as published.
    Message(&'a [u8]),
    /// A subscription was confirmed.
    Subscribed,
    /// The reply to our ping.
    Pong,
    /// The server pinged us and expects [`Protocol::pong`].
    Ping,
    /// The server reported an error (`code` is the JSON error code, or the protocol's
    /// nearest equivalent).
    ServerError { code: String, text: String },
    /// Anything else (greetings, publish acknowledgements, +OK): counted, otherwise ignored.
    Other,
}

/// A frame that cannot be understood. It costs the connection, never the process.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes do not follow the protocol's grammar.
    #[error("malformed {protocol} frame: {reason}")]
    Malformed {
        /// Protocol name.
        protocol: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
}

impl FrameError {
    pub(crate) fn new(protocol: &'static str, reason: &'static str) -> Self {
        FrameError::Malformed { protocol, reason }
    }
}

/// Result of one decode attempt: the event and the bytes it used, or `None` for "need more".
pub type Decoded<'a> = Result<Option<(Event<'a>, usize)>, FrameError>;

impl Protocol {
    /// Parses the scheme of a `--target` URL.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "json" => Some(Protocol::Json),
            "redis" => Some(Protocol::Redis),
            "nats" => Some(Protocol::Nats),
            "mqtt" => Some(Protocol::Mqtt),
            _ => None,
        }
    }

    /// The scheme as written in `--target`.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Redis => "redis",
            Protocol::Nats => "nats",
            Protocol::Mqtt => "mqtt",
        }
    }

    /// The port the target usually listens on.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Json => 7400,
            Protocol::Redis => 6379,
            Protocol::Nats => 4222,
            Protocol::Mqtt => 1883,
        }
    }

    /// Bytes sent right after the TCP connection is up; `client_id` must be unique per
    /// connection (MQTT brokers drop an older session with the same id).
    pub fn hello(self, out: &mut Vec<u8>, client_id: u64) {
        match self {
            Protocol::Json => json::hello(out),
            Protocol::Redis => {}
            Protocol::Nats => nats::connect(out),
            Protocol::Mqtt => mqtt::connect(out, client_id),
        }
    }

    /// Subscribes to `channel`; the server confirms with [`Event::Subscribed`] (or
    /// [`Event::Pong`] where [`Protocol::subscribe_confirmed_by_pong`]).
    pub fn subscribe(self, out: &mut Vec<u8>, channel: &[u8]) {
        match self {
            Protocol::Json => json::subscribe(out, channel),
            Protocol::Redis => redis::subscribe(out, channel),
            Protocol::Nats => nats::subscribe(out, channel),
            Protocol::Mqtt => mqtt::subscribe(out, channel),
        }
    }

    /// True when a subscription is confirmed by the PONG that follows it (NATS has no
    /// subscribe reply with `verbose:false`).
    pub fn subscribe_confirmed_by_pong(self) -> bool {
        self == Protocol::Nats
    }

    /// Publishes `payload` on `channel` without asking for an acknowledgement where the
    /// protocol allows it (Redis always answers with the receiver count).
    pub fn publish(self, out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
        match self {
            Protocol::Json => json::publish(out, channel, payload),
            Protocol::Redis => redis::publish(out, channel, payload),
            Protocol::Nats => nats::publish(out, channel, payload),
            Protocol::Mqtt => mqtt::publish(out, channel, payload),
        }
    }

    /// A ping; the server answers with [`Event::Pong`].
    pub fn ping(self, out: &mut Vec<u8>) {
        match self {
            Protocol::Json => json::ping(out),
            Protocol::Redis => redis::ping(out),
            Protocol::Nats => nats::ping(out),
            Protocol::Mqtt => mqtt::ping(out),
        }
    }

    /// The answer to a server's [`Event::Ping`].
    pub fn pong(self, out: &mut Vec<u8>) {
        if self == Protocol::Nats {
            nats::pong(out);
        }
    }

    /// Cuts the first complete frame off `buf`.
    pub fn decode(self, buf: &[u8]) -> Decoded<'_> {
        match self {
            Protocol::Json => json::decode(buf),
            Protocol::Redis => redis::decode(buf),
            Protocol::Nats => nats::decode(buf),
            Protocol::Mqtt => mqtt::decode(buf),
        }
    }
}

/// Appends the decimal form of `n` without allocating.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses an unsigned decimal; `None` on anything else (including empty input).
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"0 18446744073709551615");
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12a"), None);
        assert_eq!(parse_decimal(b"-1"), None);
    }

    /// Every adapter must answer "need more" for every strict prefix of a frame, and
    /// decode the whole frame to the same event.
    #[test]
    fn every_prefix_is_incomplete() {
        let cases: [(Protocol, Vec<u8>); 4] = [
            (
                Protocol::Json,
                b"{\"command\":\"MESSAGE\",\"channel\":\"a\",\"message\":\"hi\"}\n".to_vec(),
            ),
            (
                Protocol::Redis,
                b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n".to_vec(),
            ),
            (Protocol::Nats, b"MSG a 1 2\r\nhi\r\n".to_vec()),
            (Protocol::Mqtt, vec![0x30, 5, 0, 1, b'a', b'h', b'i']),
        ];
        for (protocol, frame) in cases {
            for cut in 0..frame.len() {
                assert_eq!(
                    protocol.decode(&frame[..cut]),
                    Ok(None),
                    "{protocol:?} {cut}"
                );
            }
            assert_eq!(
                protocol.decode(&frame),
                Ok(Some((Event::Message(b"hi"), frame.len()))),
                "{protocol:?}"
            );
        }
    }
}
