//! Channel-name rules: what a channel or a subscription pattern may look like.
//!
//! Owns validation only; matching patterns against channels belongs to the router.
//! A channel is 1..=256 bytes of `.`-separated non-empty tokens with no whitespace or
//! control characters. In a pattern, a token that is exactly `*` matches one token and a
//! token that is exactly `>` matches one or more trailing tokens (last only).

/// Longest channel or pattern, in bytes.
pub const MAX_CHANNEL_LEN: usize = 256;

/// Why a channel or pattern was refused; the text goes into the `ERROR` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Zero-length channel.
    #[error("channel is empty")]
    Empty,
    /// Longer than [`MAX_CHANNEL_LEN`].
    #[error("channel is longer than 256 bytes")]
    TooLong,
    /// `a..b`, `.a` or `a.`.
    #[error("channel has an empty token")]
    EmptyToken,
    /// Whitespace or a control character.
    #[error("channel contains whitespace or a control character")]
    BadCharacter,
    /// `>` anywhere but as the last token of a pattern.
    #[error("'>' may only be the last token")]
    GreaterNotLast,
    /// A wildcard token in a PUBLISH.
    #[error("cannot publish to a wildcard channel")]
    WildcardInPublish,
}

/// Checks the rules shared by channels and patterns; returns whether the name holds a
/// wildcard token.
fn validate(name: &str) -> Result<bool, ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    let bytes = name.as_bytes();
    if !name.is_ascii() && name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ChannelError::BadCharacter);
    }
    // One pass over the bytes: ASCII whitespace and controls (all <= 0x20, or DEL),
    // and the tokens between dots. `.`, `*` and `>` never occur inside a multi-byte
    // UTF-8 sequence, so bytes are enough.
    let mut wildcard = false;
    let mut start = 0;
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(b'.');
        if c == b'.' {
            match &bytes[start..i] {
                [] => return Err(ChannelError::EmptyToken),
                [b'*'] => wildcard = true,
                [b'>'] if i < bytes.len() => return Err(ChannelError::GreaterNotLast),
                [b'>'] => wildcard = true,
                _ => {}
            }
            start = i + 1;
        } else if c <= b' ' || c == 0x7f {
            return Err(ChannelError::BadCharacter);
        }
    }
    Ok(wildcard)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = !HIGH;

/// High bit set in exactly the bytes of `w` equal to `c`.
#[inline]
fn bytes_equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * c as u64);
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// The bytes of `w` that keep a name from being plain, and its dots: a high bit in
/// `bad` for each byte >= 0x7f (DEL, non-ASCII), < 0x21 (space, controls), `*`, `>`, `"`
/// or `\\`; a high bit in `dots` for each `.`. Exact for bytes below 0x80; those at or
/// above are flagged anyway.
#[inline]
pub(crate) fn plain_word(w: u64) -> (u64, u64) {
    let high = (w | ((w & LOW7) + ONES)) & HIGH;
    let low = !((w & LOW7) + ONES * 0x5f) & HIGH;
    let bad = high
        | low
        | bytes_equal(w, b'*')
        | bytes_equal(w, b'>')
        | bytes_equal(w, b'"')
        | bytes_equal(w, b'\\');
    (bad, bytes_equal(w, b'.'))
}

/// Whether `name` is a plain channel: 1..=256 bytes, all printable ASCII (0x21..=0x7e)
/// but `*`, `>`, `"` and `\\`, no empty token. A plain channel is a valid channel to
/// publish on and needs no escaping inside a JSON string. Eight bytes at a time; exact
/// for what it accepts, and anything it does not accept goes to [`validate`], which
/// names the problem (or accepts, e.g. non-ASCII letters, `"` or `a*` inside a token).
/// A PUBLISH's channel is nearly always plain; the PUBLISH fast path proves it while
/// scanning the frame (`protocol::parse::fast`), so the codec does not ask again.
#[inline]
pub fn is_plain(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if bytes.len() > MAX_CHANNEL_LEN || first == b'.' || last == b'.' {
        return false;
    }
    let check = |w: u64| -> (bool, u64) {
        let (bad, dots) = plain_word(w);
        // Two dots in a row inside the word.
        (bad == 0 && dots & (dots >> 8) == 0, dots)
    };
    let word_at = |at: usize| super::json::word_at(bytes, at);
    let len = bytes.len();
    if len < 8 {
        // Short names: padded with a plain letter, which is neither bad nor a dot.
        let mut word = [b'A'; 8];
        for (slot, &c) in word.iter_mut().zip(bytes) {
            *slot = c;
        }
        return check(u64::from_le_bytes(word)).0;
    }
    let mut dot_before = false;
    let mut at = 0;
    while at + 8 <= len {
        let (ok, dots) = check(word_at(at));
        // Two dots in a row across the previous word's last byte.
        if !ok || (dot_before && dots & 0x80 != 0) {
            return false;
        }
        dot_before = dots >> 63 != 0;
        at += 8;
    }
    // The last bytes, as the word ending at the end: it overlaps the previous one, so
    // every pair of neighbours that crosses into the tail lies inside it.
    at == len || check(word_at(len - 8)).0
}

/// Validates a subscription pattern; returns `true` when it holds a wildcard token.
pub fn validate_pattern(pattern: &str) -> Result<bool, ChannelError> {
    if is_plain(pattern) {
        return Ok(false);
    }
    validate(pattern)
}

/// Validates a channel to publish on: the shared rules, and no wildcard tokens.
pub fn validate_publish(channel: &str) -> Result<(), ChannelError> {
    if is_plain(channel) {
        return Ok(());
    }
    if validate(channel)? {
        Err(ChannelError::WildcardInPublish)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The eight-bytes-at-a-time check accepts only what the byte loop accepts.
        #[test]
        fn plain_agrees_with_the_byte_loop(name in "[a-c.*> \t\u{7f}\u{1}é]{0,20}") {
            if is_plain(&name) {
                prop_assert_eq!(validate(&name), Ok(false), "{:?}", name);
            }
        }

        #[test]
        fn plain_accepts_plain_names(name in "[a-zA-Z0-9_-]{1,9}(\\.[a-zA-Z0-9_-]{1,9}){0,20}") {
            prop_assume!(name.len() <= MAX_CHANNEL_LEN);
            prop_assert!(is_plain(&name), "{:?}", name);
        }
    }

    #[test]
    fn plain_edges() {
        assert!(is_plain("a"));
        assert!(is_plain("bench.pairs"));
        assert!(is_plain("abcdefg.hijklmn.o"));
        assert!(!is_plain("abcdefg..hijklmn"));
        assert!(!is_plain("ab..c"));
        assert!(!is_plain("abcdefg.\u{7f}"));
        assert!(!is_plain("abcdefg..x"));
        assert!(!is_plain(&format!("{}..x", "a".repeat(7))));
        assert!(!is_plain(&format!("{}.{}", "a".repeat(7), ".b")));
        assert!(is_plain(&"a".repeat(256)));
        assert!(!is_plain(&"a".repeat(257)));
        assert!(!is_plain("a b"));
        assert!(!is_plain("a.~\u{80}"));
        assert!(is_plain("~!#$%&'()+,-/:;<=?@[]^_`{|}"));
        // Valid, but not plain: they need escaping inside a JSON string.
        assert!(!is_plain("a\"b") && validate_publish("a\"b").is_ok());
        assert!(!is_plain("a\\b") && validate_publish("a\\b").is_ok());
    }

    #[test]
    fn accepts_plain_and_wildcard_names() {
        assert_eq!(validate_pattern("news"), Ok(false));
        assert_eq!(validate_pattern("a.b.c"), Ok(false));
        assert_eq!(validate_pattern("a.*.c"), Ok(true));
        assert_eq!(validate_pattern("a.>"), Ok(true));
        assert_eq!(validate_pattern(">"), Ok(true));
        // Only a whole token is a wildcard.
        assert_eq!(validate_pattern("a*.b>"), Ok(false));
        assert_eq!(validate_publish("a*.b>"), Ok(()));
        assert_eq!(validate_publish("ünïcode.ok"), Ok(()));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_pattern(""), Err(ChannelError::Empty));
        assert_eq!(validate_pattern("a..b"), Err(ChannelError::EmptyToken));
        assert_eq!(validate_pattern(".a"), Err(ChannelError::EmptyToken));
        assert_eq!(validate_pattern("a."), Err(ChannelError::EmptyToken));
        assert_eq!(validate_pattern("a b"), Err(ChannelError::BadCharacter));
        assert_eq!(validate_pattern("a\tb"), Err(ChannelError::BadCharacter));
        assert_eq!(validate_pattern("a\u{7}"), Err(ChannelError::BadCharacter));
        assert_eq!(
            validate_pattern("a\u{a0}b"),
            Err(ChannelError::BadCharacter)
        );
        assert_eq!(validate_pattern("a.>.b"), Err(ChannelError::GreaterNotLast));
        assert_eq!(
            validate_publish("a.*"),
            Err(ChannelError::WildcardInPublish)
        );
        assert_eq!(
            validate_publish("a.>"),
            Err(ChannelError::WildcardInPublish)
        );
        assert_eq!(validate_pattern(&"a".repeat(256)), Ok(false));
        assert_eq!(
            validate_pattern(&"a".repeat(257)),
            Err(ChannelError::TooLong)
        );
    }
}
