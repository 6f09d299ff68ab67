//! Broker-to-broker frames (federation links) and broker names.
//!
//! Owns the encoding of the frames only brokers send each other (`INTEREST`,
//! `NOINTEREST`, `ROUTE`, and the link `HELLO`), the rules for broker names, and
//! [`Path`], the list of brokers a frame has crossed. Plain clients never receive these
//! frames. It does not decide where frames go (that is `federation`).

use super::encode::write_json_str;

/// Longest broker name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Most brokers a routed frame may have crossed; longer paths are dropped as a
/// misconfiguration (a tree deeper than this is not a plausible deployment).
pub const MAX_HOPS: usize = 32;

/// Bytes a `ROUTE` may add around what a client published: the command, `seq`, a
/// `path` of [`MAX_HOPS`] names of [`MAX_NAME_LEN`] bytes, and the field names. A link
/// accepts frames up to the peer's `max_frame` plus this, so every message a client was
/// allowed to publish can cross it.
pub const LINK_ENVELOPE: usize = 256 + MAX_HOPS * (MAX_NAME_LEN + 3);

/// Why a broker name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than [`MAX_NAME_LEN`].
    #[error("broker name must be 1 to 64 bytes long")]
    Length,
    /// A character outside `A-Z a-z 0-9 . _ : @ -`.
    #[error("broker name may only hold letters, digits and . _ : @ -")]
    Character,
}

/// Checks a broker name: 1 to 64 bytes of letters, digits and `. _ : @ -`. Names never
/// need JSON escapes, which keeps [`Path`] trivial to read.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
    {
        return Err(NameError::Character);
    }
    Ok(())
}

/// The raw JSON text of a `path` field: an array of broker names, origin first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<'a>(&'a str);

impl<'a> Path<'a> {
    /// Checks raw JSON text: a non-empty array of valid broker names, at most
    /// [`MAX_HOPS`] long.
    pub fn parse(raw: &'a str) -> Option<Path<'a>> {
        let path = Path(raw);
        let mut n = 0;
        for name in path.try_iter()? {
            validate_name(name?).ok()?;
            n += 1;
        }
        (1..=MAX_HOPS).contains(&n).then_some(path)
    }

    /// Iterates over the names (origin first).
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        self.try_iter().into_iter().flatten().map_while(|n| n)
    }

    fn try_iter(&self) -> Option<impl Iterator<Item = Option<&'a str>>> {
        let inner = self.0.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
        Some(inner.split(',').map(|item| {
            let item = item.trim();
            item.strip_prefix('"')?.strip_suffix('"')
        }))
    }

    /// The broker that sent the frame (the last name on the path).
    pub fn last(&self) -> &'a str {
        self.iter().last().unwrap_or("")
    }

    /// The broker where the message or interest started.
    pub fn origin(&self) -> &'a str {
        self.iter().next().unwrap_or("")
    }

    /// Whether `name` is on the path.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// Number of brokers on the path.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Always false for a parsed path; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends the JSON array `path + [me]`.
pub fn write_path_with(out: &mut Vec<u8>, path: impl Iterator<Item = impl AsRef<str>>, me: &str) {
    out.push(b'[');
    for name in path {
        write_json_str(out, name.as_ref());
        out.push(b',');
    }
    write_json_str(out, me);
    out.push(b']');
}

/// The `HELLO` a downstream broker sends on a new link: its name, the longest frame it
/// accepts, and the link credential when it has one.
pub fn encode_link_hello(out: &mut Vec<u8>, me: &str, max_frame: usize, token: Option<&str>) {
    out.extend_from_slice(b"{\"command\":\"HELLO\",\"name\":");
    write_json_str(out, me);
    out.extend_from_slice(b",\"echo\":false,\"link\":true,\"max_frame\":");
    out.extend_from_slice(max_frame.to_string().as_bytes());
    if let Some(token) = token {
        out.extend_from_slice(b",\"token\":");
        write_json_str(out, token);
    }
    out.extend_from_slice(b"}\n");
}

/// `INTEREST`: brokers along `path` (origin first, sender last) want `pattern`.
pub fn encode_interest<S: AsRef<str>>(out: &mut Vec<u8>, pattern: &str, path: &[S]) {
    out.extend_from_slice(b"{\"command\":\"INTEREST\",\"channel\":");
    write_json_str(out, pattern);
    out.extend_from_slice(b",\"path\":[");
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, name.as_ref());
    }
    out.extend_from_slice(b"]}\n");
}

/// `NOINTEREST`: `origin` no longer wants `pattern` through the sender.
pub fn encode_no_interest(out: &mut Vec<u8>, pattern: &str, origin: &str) {
    out.extend_from_slice(b"{\"command\":\"NOINTEREST\",\"channel\":");
    write_json_str(out, pattern);
    out.extend_from_slice(b",\"origin\":");
    write_json_str(out, origin);
    out.extend_from_slice(b"}\n");
}

/// `ROUTE`: a message crossing a link. `seq` numbers the origin's messages; the path
/// (origin first) has the sender appended; `message` is the payload's JSON text.
pub fn encode_route(
    out: &mut Vec<u8>,
    channel: &str,
    seq: u64,
    path: Option<Path<'_>>,
    me: &str,
    message: &str,
) {
    encode_route_head(out, channel, seq, path, me);
    out.extend_from_slice(b",\"message\":");
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"}\n");
}

/// The start of a `ROUTE` up to (not including) its payload field, which the caller
/// appends with the closing `}` and newline: `"message"` with JSON text, or `"data"`
/// with base64 text for a payload that is not JSON.
pub fn encode_route_head(
    out: &mut Vec<u8>,
    channel: &str,
    seq: u64,
    path: Option<Path<'_>>,
    me: &str,
) {
    out.extend_from_slice(b"{\"command\":\"ROUTE\",\"channel\":");
    write_json_str(out, channel);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"path\":");
    match path {
        Some(p) => write_path_with(out, p.iter(), me),
        None => write_path_with(out, std::iter::empty::<&str>(), me),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("hub").is_ok());
        assert!(validate_name("127.0.0.1:7400").is_ok());
        assert!(validate_name("leaf-a@host_1").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Length));
        assert_eq!(validate_name(&"x".repeat(65)), Err(NameError::Length));
        assert_eq!(validate_name("a b"), Err(NameError::Character));
        assert_eq!(validate_name("a\"b"), Err(NameError::Character));
    }

    #[test]
    fn paths() {
        let p = Path::parse(r#"["a", "b:1"]"#).expect("valid");
        assert_eq!(p.iter().collect::<Vec<_>>(), vec!["a", "b:1"]);
        assert_eq!(p.origin(), "a");
        assert_eq!(p.last(), "b:1");
        assert!(p.contains("b:1") && !p.contains("b"));
        assert_eq!(p.len(), 2);
        assert!(Path::parse("[]").is_none());
        assert!(Path::parse(r#"["a\"b"]"#).is_none());
        assert!(Path::parse(r#"["a",1]"#).is_none());
        assert!(Path::parse(r#"{"a":1}"#).is_none());
        let long = format!("[{}]", vec!["\"x\""; MAX_HOPS + 1].join(","));
        assert!(Path::parse(&long).is_none());
        let mut out = Vec::new();
        write_path_with(&mut out, p.iter(), "c");
        assert_eq!(out, br#"["a","b:1","c"]"#.to_vec());
    }

    #[test]
    fn frames_are_json() {
        let mut out = Vec::new();
        encode_route(&mut out, "x.y", 7, Path::parse(r#"["a"]"#), "b", "1.0");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], serde_json::json!(["a", "b"]));
        assert_eq!(v["seq"], 7);
        assert!(out.ends_with(b"\"message\":1.0}\n"));
        out.clear();
        encode_interest(&mut out, "a.*", &["x", "y"]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], serde_json::json!(["x", "y"]));
        out.clear();
        encode_no_interest(&mut out, "a.*", "x");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["origin"], "x");
        out.clear();
        encode_link_hello(&mut out, "leaf", 4096, Some("t"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["link"], true);
        assert_eq!(v["max_frame"], 4096);
        assert_eq!(v["echo"], false);
    }
}
