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

/// Validates a subscription pattern; returns `true` when it holds a wildcard token.
pub fn validate_pattern(pattern: &str) -> Result<bool, ChannelError> {
    validate(pattern)
}

/// Validates a channel to publish on: the shared rules, and no wildcard tokens.
pub fn validate_publish(channel: &str) -> Result<(), ChannelError> {
    if validate(channel)? {
        Err(ChannelError::WildcardInPublish)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
