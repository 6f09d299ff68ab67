//! The payload stamp: every message loadgen publishes carries its publisher id, sequence
//! number and (intended) send time, packed into 15 printable ASCII bytes and padded to the
//! payload size. Owns that encoding only; it never touches sockets or statistics.
//!
//! The alphabet needs no escaping in JSON, RESP, NATS or MQTT, so the same bytes travel
//! unchanged through every target and a 16-byte payload still carries a full stamp.

/// 64 symbols, 6 bits each: digits, letters, `-` and `_` (all JSON-safe, no escapes).
const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
/// Symbols for the publisher id: 64^3 = 262,144 publishers.
const PUB_DIGITS: usize = 3;
/// Symbols for the sequence number: 64^6 = 68.7 billion messages per publisher.
const SEQ_DIGITS: usize = 6;
/// Symbols for the send time in microseconds since the run's base: 64^6 us = 19 hours.
const TIME_DIGITS: usize = 6;
/// Bytes taken by the stamp at the start of every payload.
pub const STAMP_LEN: usize = PUB_DIGITS + SEQ_DIGITS + TIME_DIGITS;
/// Smallest payload loadgen accepts (`--payload`).
pub const MIN_PAYLOAD: usize = 16;
/// Largest publisher id the stamp can carry, exclusive.
pub const MAX_PUBLISHERS: u64 = 1 << (6 * PUB_DIGITS);
/// Start of an interest-probe payload (not a stamp: `~` is outside the alphabet, and
/// JSON-safe). Subscribers note probes and otherwise ignore them.
pub const PROBE_PREFIX: &[u8] = b"~probe";
/// Start of a reachability-check payload (`fleet`): like a probe, not a stamp, but
/// counted apart, so a check can be told from the probes that waited for interest.
pub const CHECK_PREFIX: &[u8] = b"~check";
/// Byte used to pad a payload after its stamp.
const PAD: u8 = b'.';

/// Reverse lookup of [`ALPHABET`]; `0xFF` marks a byte that is not a symbol.
const DECODE: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global id of the publisher that sent it.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
    /// Send time (intended send time for paced runs), microseconds since the run's base.
    pub micros: u64,
}

fn put(out: &mut Vec<u8>, mut value: u64, digits: usize) {
    let start = out.len();
    out.resize(start + digits, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = ALPHABET[(value & 63) as usize];
        value >>= 6;
    }
}

fn get(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in bytes {
        let d = DECODE[b as usize];
        if d == 0xFF {
            return None;
        }
        value = (value << 6) | u64::from(d);
    }
    Some(value)
}

/// Appends a payload of exactly `size` bytes (at least [`STAMP_LEN`]) carrying `stamp`.
pub fn write(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    put(out, u64::from(stamp.publisher), PUB_DIGITS);
    put(out, stamp.seq, SEQ_DIGITS);
    put(out, stamp.micros, TIME_DIGITS);
    out.resize(start + size.max(STAMP_LEN), PAD);
}

/// Reads the stamp at the start of `payload`; `None` when it is not one of ours.
pub fn read(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    let publisher = get(&payload[..PUB_DIGITS])?;
    let seq = get(&payload[PUB_DIGITS..PUB_DIGITS + SEQ_DIGITS])?;
    let micros = get(&payload[PUB_DIGITS + SEQ_DIGITS..STAMP_LEN])?;
    Some(Stamp {
        publisher: u32::try_from(publisher).ok()?,
        seq,
        micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let stamp = Stamp {
            publisher: 261_000,
            seq: 68_000_000_000,
            micros: 12_345_678_901,
        };
        let mut out = b"x".to_vec();
        write(&mut out, stamp, 16);
        assert_eq!(out.len(), 17);
        assert_eq!(out[16], PAD);
        assert_eq!(read(&out[1..]), Some(stamp));
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert_eq!(read(b"hello"), None);
        assert_eq!(read(b"hello world, this is not a stamp"), None);
    }
}
