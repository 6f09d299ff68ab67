//! The reference meaning of a subscription pattern, token by token.
//!
//! Owns the plain, obviously-correct matcher used by tests as the oracle for the trie
//! and by code that checks one pattern against one channel. Never used for fan-out.

/// Whether `pattern` (a validated subscription) matches `channel` (a validated publish
/// channel): `*` matches exactly one token, a final `>` one or more tokens.
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    let mut p = pattern.split('.');
    let mut c = channel.split('.');
    loop {
        match (p.next(), c.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(ct)) if pt == ct => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
