//! Differential: our scanner + parser against serde_json, one input line at a time.
//!
//! For any line, serde_json (parsing into a `Value`) is the oracle:
//! - serde_json refuses the line (not JSON, not UTF-8): we must refuse it with `bad_json`;
//! - it is JSON but not an object, or has no string `command`: `bad_frame`;
//! - otherwise a small reference interpreter written against the `Value` decides the
//!   command or the code (`unknown_command`, `bad_field`), and every value we keep as raw
//!   text (`message`, `id`) must reparse to the very value serde_json saw.
//!
//! `parse_link_frame` is held to the same reference, with the broker-only commands.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use pubsub::protocol::{
    parse_frame, parse_link_frame, validate_name, Command, ErrorCode, Frame, Raw, RoutePayload,
    MAX_HOPS,
};
use serde_json::value::RawValue;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A frame never holds its newline: the scanner cut it off.
    let line = match memchr_nl(data) {
        Some(i) => &data[..i],
        None => data,
    };
    check(line, false);
    check(line, true);
});

fn memchr_nl(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// What the reference expects of one line.
#[derive(Debug, PartialEq)]
enum Expect {
    /// An error with this code.
    Err(ErrorCode),
    /// Accepted; the frame is compared field by field in `compare`.
    Ok,
}

fn check(line: &[u8], link: bool) {
    let ours = if link {
        parse_link_frame(line)
    } else {
        parse_frame(line)
    };
    let theirs: Result<Value, serde_json::Error> = serde_json::from_slice(line);
    let v = match theirs {
        Ok(v) => v,
        // Valid JSON that serde_json refuses only because a number does not fit an f64
        // (`5e444`): the broker accepts it and passes it on as written (tested in
        // `broker_protocol`), so serde_json is no reference for it.
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => {
            match &ours {
                Err(fe) => assert_eq!(
                    fe.code,
                    ErrorCode::BadJson,
                    "serde_json refuses ({e}), we said {:?}",
                    fe.message
                ),
                Ok(f) => panic!("serde_json refuses ({e}) but we accepted {f:?}"),
            }
            return;
        }
    };
    let expect = reference(line, &v, link);
    match (&ours, expect) {
        (Ok(frame), Expect::Ok) => compare(frame, &v),
        (Err(fe), Expect::Err(code)) => {
            assert_eq!(fe.code, code, "wrong code: {:?}", fe.message);
            compare_id(fe.id, &v);
        }
        (Ok(frame), Expect::Err(code)) => panic!("accepted {frame:?}, reference says {code}"),
        (Err(fe), Expect::Ok) => panic!("refused ({}: {}), reference accepts", fe.code, fe.message),
    }
}

/// The raw text of each top-level member (last one wins, as in the broker), for the
/// fields whose rules are about how they are written (`path`).
fn raw_members(line: &[u8]) -> HashMap<String, &RawValue> {
    serde_json::from_slice(line).unwrap_or_default()
}

fn is_str_or_absent(v: &Value, f: &str) -> bool {
    matches!(v.get(f), None | Some(Value::Null) | Some(Value::String(_)))
}

fn is_bool_or_absent(v: &Value, f: &str) -> bool {
    matches!(v.get(f), None | Some(Value::Null) | Some(Value::Bool(_)))
}

fn is_str(v: &Value, f: &str) -> bool {
    matches!(v.get(f), Some(Value::String(_)))
}

/// An unsigned integer as the broker reads one: the JSON text of a u64. (`-0` is
/// refused by the broker and read as 0 by serde_json: either is fine, see `uint_ok`.)
fn uint(v: &Value, f: &str) -> Option<Option<u64>> {
    match v.get(f) {
        None | Some(Value::Null) => Some(None),
        Some(n) => n.as_u64().map(Some),
    }
}

/// A path as the broker reads one: an array of 1..=MAX_HOPS broker names, each written
/// as a plain JSON string (names never need escapes, so escaped ones are refused).
fn path_ok(line: &[u8]) -> bool {
    let raws = raw_members(line);
    let Some(raw) = raws.get("path") else {
        return false;
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return false;
    };
    (1..=MAX_HOPS).contains(&items.len())
        && items.iter().all(|item| {
            item.get()
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .is_some_and(|name| validate_name(name).is_ok())
        })
}

fn reference(line: &[u8], v: &Value, link: bool) -> Expect {
    use ErrorCode::*;
    let Some(obj) = v.as_object() else {
        return Expect::Err(BadFrame);
    };
    let Some(Value::String(name)) = obj.get("command") else {
        return Expect::Err(BadFrame);
    };
    let name = name.to_ascii_uppercase();
    let field = |ok: bool| {
        if ok {
            Expect::Ok
        } else {
            Expect::Err(BadField)
        }
    };
    match name.as_str() {
        "PUBLISH" => field(
            is_str(v, "channel") && obj.contains_key("message") && is_bool_or_absent(v, "ack"),
        ),
        "SUBSCRIBE" | "UNSUBSCRIBE" => field(is_str(v, "channel")),
        "PING" | "STATS" => Expect::Ok,
        "HELLO" => {
            let is_link = matches!(v.get("link"), Some(Value::Bool(true)));
            field(
                is_bool_or_absent(v, "link")
                    && is_str_or_absent(v, "name")
                    && is_bool_or_absent(v, "echo")
                    && is_str_or_absent(v, "token")
                    && (!is_link || uint_ok(v, "max_frame")),
            )
        }
        _ if !link => Expect::Err(UnknownCommand),
        "ROUTE" => field(
            is_str(v, "channel")
                && uint(v, "seq").is_some_and(|s| s.is_some())
                && uint_ok(v, "seq")
                && path_ok(line)
                && (obj.contains_key("message") || is_str(v, "data")),
        ),
        "INTEREST" => field(is_str(v, "channel") && path_ok(line)),
        "NOINTEREST" => field(is_str(v, "channel") && is_str(v, "origin")),
        "WELCOME" => field(is_str(v, "server") && uint_ok(v, "max_frame")),
        "ERROR" => field(is_str_or_absent(v, "code") && is_str_or_absent(v, "error")),
        _ => Expect::Err(UnknownCommand),
    }
}

/// Whether an optional unsigned field is acceptable. A literal `-0` is the one number
/// serde_json reads as an unsigned integer (0) and the broker's `u64::from_str` refuses;
/// no broker writes it, so the reference treats it as refused too.
fn uint_ok(v: &Value, f: &str) -> bool {
    uint(v, f).is_some() && !matches!(v.get(f), Some(Value::Number(n)) if n.is_i64() && !n.is_u64())
}

/// serde_json's reading of raw text the parser kept.
fn reparse(raw: Raw<'_>) -> Value {
    serde_json::from_str(raw.get())
        .unwrap_or_else(|e| panic!("kept raw text that is not JSON ({e}): {:?}", raw.get()))
}

fn compare_id(id: Option<Raw<'_>>, v: &Value) {
    let want = v.as_object().and_then(|o| o.get("id"));
    assert_eq!(id.map(reparse).as_ref(), want, "id differs");
}

fn str_field<'v>(v: &'v Value, f: &str) -> Option<&'v str> {
    v.get(f).and_then(Value::as_str)
}

fn compare(frame: &Frame<'_>, v: &Value) {
    compare_id(frame.id, v);
    let msg = |raw: &Raw<'_>| assert_eq!(Some(&reparse(*raw)), v.get("message"), "message");
    match &frame.command {
        Command::Publish {
            channel,
            message,
            ack,
            plain,
        } => {
            assert_eq!(Some(&**channel), str_field(v, "channel"));
            assert_eq!(*plain, pubsub::protocol::is_plain(channel), "plain");
            msg(message);
            assert_eq!(*ack, v.get("ack").and_then(Value::as_bool).unwrap_or(true));
        }
        Command::Subscribe { channel } | Command::Unsubscribe { channel } => {
            assert_eq!(Some(&**channel), str_field(v, "channel"));
        }
        Command::Ping | Command::Stats => {}
        Command::Hello(h) => {
            assert_eq!(h.name.as_deref(), str_field(v, "name"));
            assert_eq!(h.token.as_deref(), str_field(v, "token"));
            assert_eq!(
                h.echo,
                v.get("echo").and_then(Value::as_bool).unwrap_or(true)
            );
            assert_eq!(
                h.link,
                v.get("link").and_then(Value::as_bool).unwrap_or(false)
            );
            let mf = if h.link {
                uint(v, "max_frame").flatten()
            } else {
                None
            };
            assert_eq!(h.max_frame, mf);
        }
        Command::Route {
            channel,
            seq,
            path,
            payload,
        } => {
            assert_eq!(Some(&**channel), str_field(v, "channel"));
            assert_eq!(Some(*seq), v.get("seq").and_then(Value::as_u64));
            let names: Vec<&str> = path.iter().collect();
            assert_eq!(Some(names), path_names(v));
            match payload {
                RoutePayload::Json(message) => msg(message),
                RoutePayload::Base64(data) => {
                    assert!(v.get("message").is_none(), "message ignored for data");
                    assert_eq!(Some(&**data), str_field(v, "data"));
                }
            }
        }
        Command::Interest { channel, path } => {
            assert_eq!(Some(&**channel), str_field(v, "channel"));
            let names: Vec<&str> = path.iter().collect();
            assert_eq!(Some(names), path_names(v));
        }
        Command::NoInterest { channel, origin } => {
            assert_eq!(Some(&**channel), str_field(v, "channel"));
            assert_eq!(Some(&**origin), str_field(v, "origin"));
        }
        Command::Welcome { server, max_frame } => {
            assert_eq!(Some(&**server), str_field(v, "server"));
            assert_eq!(*max_frame, uint(v, "max_frame").flatten());
        }
        Command::Error { code, text } => {
            assert_eq!(&**code, str_field(v, "code").unwrap_or(""));
            assert_eq!(&**text, str_field(v, "error").unwrap_or(""));
        }
    }
}

fn path_names(v: &Value) -> Option<Vec<&str>> {
    v.get("path")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect()
}
