//! Protocol v1 on the broker side: JSON frames in, core operations, JSON replies out.
//!
//! Owns the client session of protocol v1: authentication by `HELLO`, turning each
//! command into a core operation, echoing the frame's `id` (raw text, byte for byte) in
//! its reply, mapping refusals and close reasons to `ERROR` codes, and encoding the
//! `MESSAGE` every JSON subscriber of a publish shares. Parsing and the frame encoders
//! live in [`crate::protocol`]; the semantics live in the core. It never writes to a
//! socket and never touches other connections except through the core.

use serde::Serialize;

use super::base64;
use crate::connection::{Conns, Stage};
use crate::core::{fan_out, CloseReason, Core, Msg, Origin, Payload, Refusal, Snapshot, Turn};
use crate::ids::ConnKey;
use crate::logsafe::escape_bytes;
use crate::protocol::{
    encode_error, encode_message_bytes, encode_pong, encode_published, encode_subscription,
    encode_welcome, message_len, parse_frame, parse_publish, validate_publish, write_json_str,
    Command, ErrorCode, Hello, Publish, Raw, Welcome,
};

/// Longest client name accepted in `HELLO`, in bytes.
pub const MAX_CLIENT_NAME: usize = 128;

/// Handles one frame (a line without its newline) from a protocol-v1 client.
pub fn on_frame(core: &mut Core, conns: &mut Conns, turn: &mut Turn, key: ConnKey, line: &[u8]) {
    // A line opening an object is not blank; only others are scanned.
    if line.first() != Some(&b'{') && line.iter().all(u8::is_ascii_whitespace) {
        return; // blank lines are ignored
    }
    core.stats.frames_in += 1;
    let Some(conn) = conns.get(key) else {
        return;
    };
    if core.settings.verbose {
        tracing::info!(conn = %conn.label(), frame = %escape_bytes(line), "received");
    }
    let authenticated = conn.authenticated();
    // The common frame first, as the few words the fast path reads (the same outcome
    // as `parse_frame`, which takes the same path, without moving a whole `Frame`).
    if authenticated {
        if let Some(p) = parse_publish(line) {
            return publish(core, conns, turn, key, p);
        }
    }
    let frame = match parse_frame(line) {
        Ok(frame) => frame,
        Err(e) if !authenticated => {
            return fatal(core, conns, turn, key, &CloseReason::NotAuthenticated, e.id);
        }
        Err(e) => return send_error(core, conns, turn, key, e.code, &e.message, e.id),
    };
    let id = frame.id;
    match frame.command {
        Command::Hello(hello) => on_hello(core, conns, turn, key, hello, id),
        _ if !authenticated => fatal(core, conns, turn, key, &CloseReason::NotAuthenticated, id),
        Command::Ping => {
            core.reply.clear();
            encode_pong(&mut core.reply, id);
            core.queue_reply(conns, turn, key);
        }
        Command::Stats => {
            let snapshot = core.snapshot();
            core.reply.clear();
            encode_stats(&snapshot, id, &mut core.reply);
            core.queue_reply(conns, turn, key);
        }
        Command::Subscribe { channel } => match core.subscribe(conns, turn, key, &channel) {
            Ok(n) => reply_subscription(core, conns, turn, key, "SUBSCRIBED", &channel, n, id),
            Err(r) => refused(core, conns, turn, key, r, id),
        },
        Command::Unsubscribe { channel } => match core.unsubscribe(conns, turn, key, &channel) {
            Ok(n) => reply_subscription(core, conns, turn, key, "UNSUBSCRIBED", &channel, n, id),
            Err(r) => refused(core, conns, turn, key, r, id),
        },
        Command::Publish {
            channel,
            message,
            ack,
            plain,
        } => {
            let p = Publish {
                id,
                channel: &channel,
                message,
                ack,
                plain,
            };
            publish(core, conns, turn, key, p);
        }
        // `parse_frame` refuses broker-only commands from clients.
        Command::Interest { .. }
        | Command::NoInterest { .. }
        | Command::Route { .. }
        | Command::Welcome { .. }
        | Command::Error { .. } => {}
    }
}

/// `PUBLISH` from an authenticated client: checks the channel unless the parser proved
/// it plain, fans the message out, and replies `PUBLISHED` when asked.
#[inline(always)]
pub(super) fn publish(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    p: Publish<'_>,
) {
    if !p.plain {
        if let Err(e) = validate_publish(p.channel) {
            let text = e.to_string();
            return send_error(core, conns, turn, key, ErrorCode::BadChannel, &text, p.id);
        }
    }
    let msg = Msg {
        channel: p.channel,
        plain: p.plain,
        payload: Payload::json(p.message.get()),
        origin: Origin::Client(key),
    };
    let receivers = fan_out(core, conns, turn, &msg);
    if p.ack {
        core.reply.clear();
        encode_published(&mut core.reply, p.channel, p.plain, receivers, p.id);
        core.queue_reply(conns, turn, key);
    }
}

/// `HELLO`: checks the credential, then sets the client's options or turns the
/// connection into a link. A link `HELLO` must carry the link credential
/// (`--link-token`, else `--token`) when the broker has one. On a connection that
/// already authenticated, a client `HELLO` without a token only changes `name` and
/// `echo`; a wrong token is refused and closes the connection.
fn on_hello(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    hello: Hello<'_>,
    id: Option<Raw<'_>>,
) {
    let Some(conn) = conns.get(key) else {
        return;
    };
    let settings = &core.settings;
    let expected = match hello.link {
        true => settings.link_token.as_deref().or(settings.token.as_deref()),
        false => settings.token.as_deref(),
    };
    let given = hello.token.as_deref();
    let renewing = conn.authenticated() && !hello.link && given.is_none();
    if expected.is_some_and(|t| !renewing && given != Some(t)) {
        tracing::warn!(conn = %conn.label(), link = hello.link, "authentication failed");
        return fatal(core, conns, turn, key, &CloseReason::BadCredential, id);
    }
    if let Some(name) = &hello.name {
        if let Err(text) = check_client_name(name) {
            return send_error(core, conns, turn, key, ErrorCode::BadField, text, id);
        }
    }
    let Some(conn) = conns.get_mut(key) else {
        return;
    };
    conn.advance(Stage::Open);
    if hello.link {
        return super::link::accept_link(core, conns, turn, key, &hello, id);
    }
    conn.set_echo(hello.echo);
    if let Some(name) = hello.name {
        conn.set_name(&name);
    }
    tracing::debug!(conn = %conn.label(), echo = conn.echo(), "hello");
    welcome(core, conns, turn, key, id);
}

/// Checks a client's `HELLO` name: at most [`MAX_CLIENT_NAME`] bytes, no control
/// characters (a name is shown in logs).
fn check_client_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_CLIENT_NAME {
        return Err("field 'name' must be at most 128 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("field 'name' must not hold control characters");
    }
    Ok(())
}

/// Queues `WELCOME`.
pub(super) fn welcome(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    id: Option<Raw<'_>>,
) {
    let Some(conn) = conns.get(key) else {
        return;
    };
    let welcome = Welcome {
        server: core.fed.name(),
        version: env!("CARGO_PKG_VERSION"),
        max_frame: core.settings.max_frame,
        client_id: conn.client_id(),
    };
    core.reply.clear();
    encode_welcome(&mut core.reply, &welcome, id);
    core.queue_reply(conns, turn, key);
}

#[allow(clippy::too_many_arguments)]
fn reply_subscription(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    command: &str,
    channel: &str,
    count: usize,
    id: Option<Raw<'_>>,
) {
    core.reply.clear();
    encode_subscription(&mut core.reply, command, channel, count, id);
    core.queue_reply(conns, turn, key);
}

/// A refusal's `ERROR`; the connection stays open.
fn refused(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    r: Refusal,
    id: Option<Raw<'_>>,
) {
    let (code, text) = match r {
        Refusal::BadChannel(t) => (ErrorCode::BadChannel, t),
        Refusal::Limit(t) => (ErrorCode::Limit, t),
    };
    send_error(core, conns, turn, key, code, &text, id);
}

/// Queues an `ERROR` frame; the connection stays open.
pub(super) fn send_error(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    code: ErrorCode,
    text: &str,
    id: Option<Raw<'_>>,
) {
    core.stats.count_error(code);
    core.reply.clear();
    encode_error(&mut core.reply, code, text, id);
    core.queue_reply(conns, turn, key);
}

/// Closes the connection for `reason`, with a goodbye that echoes the `id` of the
/// frame that caused it.
pub(super) fn fatal(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    reason: &CloseReason,
    id: Option<Raw<'_>>,
) {
    let Some(conn) = conns.get_mut(key) else {
        return;
    };
    if !conn.receives() {
        return; // already closing with its goodbye queued
    }
    tracing::info!(conn = %conn.label(), "closing connection: {reason}");
    core.reply.clear();
    if let Some(code) = encode_goodbye(reason, id, &mut core.reply) {
        core.stats.count_error(code);
    }
    conn.out().push(&mut core.pool, &core.reply);
    core.begin_close(conns, turn, key, true);
}

/// Protocol v1's goodbye: an `ERROR` frame with the reason's code. Returns the code.
pub fn encode_goodbye(
    reason: &CloseReason,
    id: Option<Raw<'_>>,
    out: &mut Vec<u8>,
) -> Option<ErrorCode> {
    let code = match reason {
        CloseReason::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
        CloseReason::NotAuthenticated
        | CloseReason::BadCredential
        | CloseReason::AuthTimeout { .. } => ErrorCode::Unauthorized,
        CloseReason::SlowConsumer { .. }
        | CloseReason::WriteStalled { .. }
        | CloseReason::MemoryOutput => ErrorCode::SlowConsumer,
        CloseReason::Stale { .. } | CloseReason::MemoryInput => ErrorCode::Stale,
        CloseReason::ConnectionLimit => ErrorCode::Limit,
        CloseReason::LinkRefused(_) => ErrorCode::LinkRefused,
    };
    encode_error(out, code, &reason.to_string(), id);
    Some(code)
}

/// The `MESSAGE` every JSON subscriber of `msg` receives. A JSON payload is spliced in
/// as sent; bytes become a JSON string when they are UTF-8, else base64 text with
/// `"encoding":"base64"` (before `message`, which stays last). Inlined: on the
/// single-receiver path it writes straight into a write queue.
#[inline(always)]
pub fn encode_delivery(msg: &Msg<'_>, out: &mut Vec<u8>) {
    let p = msg.payload;
    if p.json {
        // One JSON value (the parser checked it): spliced as is, no second UTF-8 pass.
        return encode_message_bytes(out, msg.channel, msg.plain, p.bytes);
    }
    out.extend_from_slice(b"{\"command\":\"MESSAGE\",\"channel\":");
    write_json_str(out, msg.channel);
    match std::str::from_utf8(p.bytes) {
        Ok(text) => {
            out.extend_from_slice(b",\"message\":");
            write_json_str(out, text);
        }
        Err(_) => {
            out.extend_from_slice(b",\"encoding\":\"base64\",\"message\":\"");
            base64::encode(p.bytes, out);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"}\n");
}

/// The length of [`encode_delivery`]'s frame for `msg` when it is known without
/// encoding (a JSON payload on a plain channel), so the fan-out can encode it straight
/// into a write queue.
#[inline]
pub fn delivery_len(msg: &Msg<'_>) -> Option<usize> {
    match msg.payload.json {
        true => message_len(msg.channel, msg.plain, msg.payload.bytes),
        false => None,
    }
}

/// The `STATS` frame: `command` first, the snapshot's fields, then the `id` as sent.
pub fn encode_stats(snapshot: &Snapshot, id: Option<Raw<'_>>, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Frame<'a> {
        command: &'static str,
        #[serde(flatten)]
        snapshot: &'a Snapshot,
    }
    let frame = Frame {
        command: "STATS",
        snapshot,
    };
    if serde_json::to_writer(&mut *out, &frame).is_err() {
        out.clear();
        return;
    }
    if let Some(id) = id {
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.get().as_bytes());
        out.push(b'}');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Path;

    #[test]
    fn byte_payloads_become_strings_or_base64() {
        let msg = |bytes: &'static [u8]| Msg {
            channel: "c",
            plain: true,
            payload: Payload { bytes, json: false },
            origin: Origin::Routed {
                seq: 1,
                path: Path::parse(r#"["a"]"#).expect("path"),
            },
        };
        let mut out = Vec::new();
        encode_delivery(&msg(b"hi \"x\""), &mut out);
        assert_eq!(
            out,
            b"{\"command\":\"MESSAGE\",\"channel\":\"c\",\"message\":\"hi \\\"x\\\"\"}\n"
        );
        out.clear();
        encode_delivery(&msg(b"\xff\x00"), &mut out);
        assert_eq!(
            out,
            b"{\"command\":\"MESSAGE\",\"channel\":\"c\",\"encoding\":\"base64\",\"message\":\"/wA=\"}\n"
        );
        out.clear();
        let json = Msg {
            payload: Payload::json("{\"a\":1.0}"),
            ..msg(b"")
        };
        encode_delivery(&json, &mut out);
        assert_eq!(
            out,
            b"{\"command\":\"MESSAGE\",\"channel\":\"c\",\"message\":{\"a\":1.0}}\n"
        );
    }
}
