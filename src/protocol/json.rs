//! A strict, allocation-free JSON scanner for the frame's top-level object.
//!
//! Owns the fast path of parsing: it walks one line, checks it is exactly one JSON
//! object (RFC 8259 grammar: no `NaN`, no comments, no control characters in strings,
//! nothing after the object), and hands each top-level field to the caller as a key and
//! the raw text of its value. It never allocates and never unescapes.
//!
//! It is allowed to give up ([`Bail`]) on anything unusual (a key with escapes, a
//! `\u` escape of a surrogate) and on every error; the caller then runs serde_json,
//! which decides and names the error. So the one rule this module must never break is:
//! accept only what serde_json accepts.
//!
//! Nesting is the one thing serde_json decides differently by path: it refuses more
//! than [`MAX_DEPTH`] open arrays and objects when it builds a value, but skips values
//! of any depth when it only borrows them raw (as the slow path does). The scanner gives
//! up past that depth, and [`too_deep`] tells the slow path to refuse such a frame as
//! serde_json would (issue 7: 200-deep frames were accepted).

/// The most arrays and objects open at once (the frame's own object counted) that
/// serde_json accepts: its recursion limit is 128, and the 128th level is refused.
pub const MAX_DEPTH: u32 = 127;

/// The scanner gave up: invalid JSON, or valid but unusual. Not an error by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

type Scan<T> = Result<T, Bail>;

/// Walks `text` as one JSON object surrounded by optional whitespace, calling
/// `field(key, raw_value, escaped)` for each top-level member in order; `escaped` tells
/// whether a string value holds escapes (false for every other kind of value).
pub fn scan_object<'a>(text: &'a str, mut field: impl FnMut(&'a str, &'a str, bool)) -> Scan<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Bail);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(Bail);
            }
            let (key_end, escaped) = skip_string(b, i)?;
            if escaped {
                return Err(Bail);
            }
            let key = &text[i + 1..key_end - 1];
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(Bail);
            }
            let start = skip_ws(b, i + 1);
            let (end, escaped) = skip_value(b, start, 1)?;
            field(key, &text[start..end], escaped);
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
    }
    if skip_ws(b, i) == b.len() {
        Ok(())
    } else {
        Err(Bail)
    }
}

/// Whether `text` holds a `\u` escape of a surrogate that is not part of a pair (a
/// high surrogate not followed by an escaped low one, or a low one alone). serde_json
/// refuses such strings when it builds a value but not when it only borrows raw text,
/// as the slow path does; the scanner gives up on them. It checks escapes only: `text`
/// need not be valid JSON. Runs only on the slow path.
pub fn lone_surrogate(text: &str) -> bool {
    let b = text.as_bytes();
    let hex = |at: usize| -> Option<u16> {
        let digits = b.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2; // any other escape: skip the escaped byte
            continue;
        }
        let Some(unit) = hex(i + 2) else {
            i += 2;
            continue;
        };
        i += 6;
        match unit {
            0xD800..=0xDBFF => {
                let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                    .then(|| hex(i + 2))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => i += 6,
                    _ => return true,
                }
            }
            0xDC00..=0xDFFF => return true,
            _ => {}
        }
    }
    false
}

/// Whether `text` opens more than [`MAX_DEPTH`] arrays and objects at once, brackets
/// inside strings not counted. It checks nesting only: `text` need not be valid JSON.
/// A plain byte loop: it runs only on the slow path (the scanner counts depth as it
/// goes).
pub fn too_deep(text: &str) -> bool {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut escaped = false;
    for &c in text.as_bytes() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// End (exclusive) of the value starting at `i`, and whether it is a string with
/// escapes.
pub(super) fn skip_value(b: &[u8], i: usize, depth: u32) -> Scan<(usize, bool)> {
    let end = match b.get(i) {
        Some(b'"') => return skip_string(b, i),
        Some(b'-' | b'0'..=b'9') => skip_number(b, i),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(b'[') => skip_array(b, i, depth + 1),
        Some(b'{') => skip_nested_object(b, i, depth + 1),
        _ => Err(Bail),
    }?;
    Ok((end, false))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Scan<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(Bail)
    }
}

/// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`
fn skip_number(b: &[u8], mut i: usize) -> Scan<usize> {
    let digits = |b: &[u8], mut i: usize| -> Scan<usize> {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            Err(Bail)
        } else {
            Ok(i)
        }
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i)?,
        _ => return Err(Bail),
    }
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Ok(i)
}

/// The eight bytes of `bytes` from `at` as a little-endian word (the unit of the SWAR
/// scans here and in the channel checks). The caller has checked `at + 8 <= len`.
#[inline(always)]
pub(crate) fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A mask with the high bit set in the lowest byte of `w` that is below 0x20, `"` or
/// `\` (bits above that byte may be spurious; the lowest one is exact).
#[inline]
pub(super) fn special_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))
}

/// End (exclusive, after the closing quote) of the string starting at `i` (a `"`),
/// and whether it holds an escape.
pub(super) fn skip_string(b: &[u8], i: usize) -> Scan<(usize, bool)> {
    let mut i = i + 1;
    let mut escaped = false;
    loop {
        // Eight bytes at a time to the next byte that needs a look.
        while i + 8 <= b.len() {
            let mask = special_mask(word_at(b, i));
            if mask != 0 {
                i += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *b.get(i).ok_or(Bail)? {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 1;
                match *b.get(i).ok_or(Bail)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                    b'u' => {
                        let hex = b.get(i + 1..i + 5).ok_or(Bail)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Bail);
                        }
                        // Surrogates (pairs or not) are left to serde_json.
                        if matches!(hex[0], b'd' | b'D')
                            && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
                        {
                            return Err(Bail);
                        }
                        i += 5;
                    }
                    _ => return Err(Bail),
                }
            }
            c if c < 0x20 => return Err(Bail),
            _ => i += 1,
        }
    }
}

fn skip_array(b: &[u8], i: usize, depth: u32) -> Scan<usize> {
    if depth > MAX_DEPTH {
        return Err(Bail);
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok(i + 1);
    }
    loop {
        i = skip_ws(b, skip_value(b, i, depth)?.0);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok(i + 1),
            _ => return Err(Bail),
        }
    }
}

fn skip_nested_object(b: &[u8], i: usize, depth: u32) -> Scan<usize> {
    if depth > MAX_DEPTH {
        return Err(Bail);
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(Bail);
        }
        i = skip_ws(b, skip_string(b, i)?.0);
        if b.get(i) != Some(&b':') {
            return Err(Bail);
        }
        i = skip_ws(b, skip_value(b, skip_ws(b, i + 1), depth)?.0);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return Err(Bail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        scan_object(text, |k, v, _| out.push((k.to_string(), v.to_string())))
            .ok()
            .map(|_| out)
    }

    /// What serde_json makes of the same text: its top-level members, raw.
    fn serde_fields(text: &str) -> Option<Vec<(String, String)>> {
        // A Value too: the raw map alone skips nested values at any depth.
        serde_json::from_str::<serde_json::Value>(text).ok()?;
        let raw: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(text).ok()?;
        Some(
            raw.into_iter()
                .map(|(k, v)| (k, v.get().to_string()))
                .collect(),
        )
    }

    #[test]
    fn accepts_frames() {
        let f = fields(r#" {"command":"PUBLISH", "channel" : "a.b","message":{"x":[1,-2.5e+3,true,null,"\u00e9\n"]} } "#)
            .expect("valid");
        assert_eq!(f[0], ("command".into(), "\"PUBLISH\"".into()));
        assert_eq!(f[1], ("channel".into(), "\"a.b\"".into()));
        assert_eq!(f[2].1, r#"{"x":[1,-2.5e+3,true,null,"\u00e9\n"]}"#);
        assert_eq!(fields("{}"), Some(vec![]));
        assert!(fields(r#"{"a":123456789012345678901234567890.000001}"#).is_some());
    }

    #[test]
    fn bails_on_invalid_or_unusual_input() {
        for bad in [
            "",
            "[]",
            "{",
            "{}x",
            "{} {}",
            r#"{"a":NaN}"#,
            r#"{"a":Infinity}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a\u0062":1}"#,
            r#"{"a":1} // comment"#,
            r#"{'a':1}"#,
        ] {
            assert_eq!(fields(bad), None, "{bad}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(fields(&deep), None);
    }

    /// `depth` open containers: the frame's object, then arrays and objects in turn.
    fn nested(depth: usize) -> String {
        let mut open = String::from("{\"message\":");
        let mut close = String::from("}");
        for level in 1..depth {
            if level % 2 == 0 {
                open.push_str("{\"k\":");
                close.insert(0, '}');
            } else {
                open.push('[');
                close.insert(0, ']');
            }
        }
        open.push_str("\"]}[{\\\"\"");
        open + &close
    }

    /// Issue 7: a 200-deep frame was accepted (the scanner left it to serde_json's raw
    /// path, which has no depth limit) though serde_json refuses past 128 levels.
    #[test]
    fn nesting_past_serde_json_limit_200_deep_is_refused() {
        let deep = nested(200);
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        assert_eq!(fields(&deep), None, "the scanner must not accept it");
        assert!(too_deep(&deep), "the slow path must be told to refuse it");
    }

    #[test]
    fn depth_limit_is_serde_json_limit_exactly() {
        let limit = MAX_DEPTH as usize;
        let at = nested(limit);
        assert!(serde_json::from_str::<serde_json::Value>(&at).is_ok());
        assert!(
            fields(&at).is_some(),
            "the scanner takes what serde_json takes"
        );
        assert!(!too_deep(&at));
        let past = nested(limit + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&past).is_err());
        assert_eq!(fields(&past), None);
        assert!(too_deep(&past));
        // Brackets inside strings, escaped quotes included, are not nesting.
        let text = format!("{{\"s\":\"\\\"{}\"}}", "[{".repeat(300));
        assert!(!too_deep(&text));
        assert!(fields(&text).is_some());
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\"k\"".to_string()),
            Just("\"v\\n\"".to_string()),
            Just("\"\\u00e9\"".to_string()),
            Just("1".to_string()),
            Just("-0.5e3".to_string()),
            Just("0".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just("\t".to_string()),
            Just("é".to_string()),
            Just("x".to_string()),
        ]
    }

    proptest! {
        /// Whatever the scanner accepts, serde_json accepts with the same members.
        #[test]
        fn never_accepts_what_serde_refuses(pieces in prop::collection::vec(piece(), 0..24)) {
            let text = pieces.concat();
            if let Some(mut ours) = fields(&text) {
                let theirs = serde_fields(&text);
                prop_assert!(theirs.is_some(), "scanner accepted {text:?}, serde refused");
                // serde's map keeps the last of duplicate keys; compare that way.
                let mut dedup = std::collections::BTreeMap::new();
                for (k, v) in ours.drain(..) {
                    dedup.insert(k, v);
                }
                let ours: Vec<(String, String)> = dedup.into_iter().collect();
                prop_assert_eq!(Some(ours), theirs);
            }
        }

        /// Around serde_json's depth limit, the scanner accepts exactly what serde_json
        /// builds a value from, and `too_deep` flags exactly what it refuses.
        #[test]
        fn depth_agrees_with_serde_json(depth in 100usize..160, inner in piece()) {
            let text = nested(depth).replacen("\"]}[{\\\"\"", &format!("[{inner}]"), 1);
            let serde_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            if fields(&text).is_some() {
                prop_assert!(serde_ok, "scanner accepted {depth} levels, serde refused");
            }
            if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
                prop_assert_eq!(too_deep(&text), !serde_ok, "depth {}", depth);
            }
        }

        /// Well-formed frames built from valid parts are accepted.
        #[test]
        fn accepts_generated_objects(
            members in prop::collection::vec(("[a-z]{1,6}", prop_oneof![
                Just("1".to_string()), Just("\"s\"".to_string()), Just("[1,{\"a\":null}]".to_string()),
                Just("-12.5E-3".to_string()), Just("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"".to_string()),
            ]), 0..6),
        ) {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
            let text = format!(" {{ {} }} ", body.join(" , "));
            prop_assert!(fields(&text).is_some(), "refused {text:?}");
        }
    }
}
