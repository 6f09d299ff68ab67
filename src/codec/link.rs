//! Federation links on the wire: the broker-only frames, in and out.
//!
//! Owns the link side of the session: a connection becoming a link (the inbound link
//! `HELLO`, the outbound link's `WELCOME`), what each link frame asks of the core and
//! the federation table (`INTEREST`, `NOINTEREST`, `ROUTE`), and encoding the frames a
//! broker sends on links (interest updates, `ROUTE` with a JSON or base64 payload).
//! Which interest goes where is decided by `federation`; dialling and re-dialling
//! belong to the reactor. It never writes to a socket.

use super::{base64, json};
use crate::connection::{Conns, Role};
use crate::core::{fan_out, CloseReason, Core, Msg, Origin, Payload, Turn};
use crate::federation::{Effect, PathRefused, RouteVerdict};
use crate::ids::ConnKey;
use crate::logsafe::{escape_bytes, Escaped};
use crate::protocol::{
    encode_interest, encode_no_interest, encode_pong, encode_route, encode_route_head,
    parse_link_frame, validate_name, validate_pattern, validate_publish, Command, Hello, Path, Raw,
    RoutePayload,
};

/// Handles one frame from a federation link: the broker-only frames, `PING` and
/// `STATS`; client commands are ignored (and logged).
pub fn on_frame(core: &mut Core, conns: &mut Conns, turn: &mut Turn, key: ConnKey, line: &[u8]) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    core.stats.frames_in += 1;
    if core.settings.verbose {
        if let Some(conn) = conns.get(key) {
            tracing::info!(conn = %conn.label(), frame = %escape_bytes(line), "received");
        }
    }
    let frame = match parse_link_frame(line) {
        Ok(frame) => frame,
        Err(e) => {
            let link = conns.get(key).map(|c| c.label());
            tracing::warn!(link = ?link, code = %e.code, error = %e.message, "ignoring a malformed frame from a federation link");
            return;
        }
    };
    match frame.command {
        Command::Ping => {
            core.reply.clear();
            encode_pong(&mut core.reply, frame.id);
            core.queue_reply(conns, turn, key);
        }
        Command::Stats => {
            let snapshot = core.snapshot();
            core.reply.clear();
            json::encode_stats(&snapshot, frame.id, &mut core.reply);
            core.queue_reply(conns, turn, key);
        }
        Command::Interest { channel, path } => on_interest(core, conns, turn, key, &channel, path),
        Command::NoInterest { channel, origin } => {
            let effects = core.fed.on_no_interest(key, &channel, &origin);
            core.apply_effects(conns, turn, effects);
        }
        Command::Route {
            channel,
            seq,
            path,
            payload,
        } => on_route(core, conns, turn, key, &channel, seq, path, payload),
        Command::Welcome { server, max_frame } => {
            on_welcome(core, conns, turn, key, &server, max_frame)
        }
        Command::Error { code, text } => {
            let peer = conns.get(key).map(|c| c.label());
            tracing::warn!(peer = ?peer, code = %Escaped(&code), text = %Escaped(&text), "link peer sent an error");
        }
        _ => {
            tracing::warn!(line = %escape_bytes(line), "ignoring a client command on a federation link");
        }
    }
}

/// A `HELLO` with `link: true` (credential already checked): the peer is a broker
/// opening a link to us.
pub(super) fn accept_link(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    hello: &Hello<'_>,
    id: Option<Raw<'_>>,
) {
    let name = hello.name.as_deref().unwrap_or("");
    if let Err(e) = validate_name(name) {
        let reason = CloseReason::LinkRefused(format!("bad broker name: {e}"));
        return json::fatal(core, conns, turn, key, &reason, id);
    }
    let Some(conn) = conns.get(key) else {
        return;
    };
    if !conn.subs().is_empty() || conn.is_link() {
        let reason =
            CloseReason::LinkRefused("a connection with subscriptions cannot become a link".into());
        return json::fatal(core, conns, turn, key, &reason, id);
    }
    let peer_addr = conn.peer();
    let max_frame = peer_max_frame(hello.max_frame, core.settings.max_frame);
    match core.fed.link_up(key, name, false, max_frame) {
        Err(e) => {
            tracing::warn!(peer = name, addr = %peer_addr, "refusing link: {e}");
            json::fatal(
                core,
                conns,
                turn,
                key,
                &CloseReason::LinkRefused(e.to_string()),
                id,
            );
        }
        Ok(effects) => {
            if let Some(conn) = conns.get_mut(key) {
                conn.set_role(Role::Link { upstream: None });
                conn.set_name(name);
            }
            tracing::info!(peer = name, addr = %peer_addr, "link up (inbound)");
            json::welcome(core, conns, turn, key, id);
            core.apply_effects(conns, turn, effects);
        }
    }
}

/// `WELCOME` on a link this broker dialled: the upstream accepted it.
fn on_welcome(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    server: &str,
    max_frame: Option<u64>,
) {
    let Some(conn) = conns.get(key) else {
        return;
    };
    let Role::Link {
        upstream: Some(idx),
    } = conn.role()
    else {
        return;
    };
    if core.fed.is_link(key) {
        return; // a second WELCOME changes nothing
    }
    let addr = conn.peer();
    let max_frame = peer_max_frame(max_frame, core.settings.max_frame);
    let refused = validate_name(server)
        .map_err(|e| format!("upstream has an invalid name: {e}"))
        .and_then(|_| {
            core.fed
                .link_up(key, server, true, max_frame)
                .map_err(|e| e.to_string())
        });
    match refused {
        Err(reason) => {
            tracing::warn!(upstream = %addr, peer = %Escaped(server), "refusing link: {}", Escaped(&reason));
            core.begin_close(conns, turn, key, false);
        }
        Ok(effects) => {
            if let Some(conn) = conns.get_mut(key) {
                conn.set_name(server);
            }
            turn.links_up.push(idx);
            tracing::info!(upstream = %addr, peer = server, "link up (outbound)");
            core.apply_effects(conns, turn, effects);
        }
    }
}

/// `INTEREST` from a link.
fn on_interest(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    pattern: &str,
    path: Path<'_>,
) {
    if validate_pattern(pattern).is_err() {
        tracing::warn!(pattern = %Escaped(pattern), "ignoring INTEREST with an invalid pattern");
        return;
    }
    match core.fed.on_interest(key, pattern, path) {
        Ok(effects) => core.apply_effects(conns, turn, effects),
        Err(e) => refused(core, conns, key, "INTEREST", &e),
    }
}

/// `ROUTE` from a link: refuse what the link may not say, drop duplicates, deliver
/// locally, forward on.
#[allow(clippy::too_many_arguments)]
fn on_route(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    channel: &str,
    seq: u64,
    path: Path<'_>,
    payload: RoutePayload<'_>,
) {
    if validate_publish(channel).is_err() {
        tracing::warn!(channel = %Escaped(channel), "ignoring ROUTE with an invalid channel");
        return;
    }
    let decoded;
    let payload = match &payload {
        RoutePayload::Json(raw) => Payload::json(raw.get()),
        RoutePayload::Base64(text) => match base64::decode(text.as_bytes()) {
            Some(bytes) => {
                decoded = bytes;
                Payload {
                    bytes: &decoded,
                    json: false,
                }
            }
            None => {
                tracing::warn!(channel = %Escaped(channel), "ignoring ROUTE whose data is not base64");
                return;
            }
        },
    };
    match core
        .fed
        .accept_route(key, channel, seq, path, payload.bytes)
    {
        RouteVerdict::Deliver => {
            let msg = Msg {
                channel,
                plain: false,
                payload,
                origin: Origin::Routed { seq, path },
            };
            fan_out(core, conns, turn, &msg);
        }
        RouteVerdict::Duplicate => {}
        RouteVerdict::Refused(e) => refused(core, conns, key, "ROUTE", &e),
    }
}

/// Logs (rate-limited) a frame refused from a link; a path that only went round a
/// loop is normal in a cyclic topology and is not logged.
fn refused(core: &mut Core, conns: &Conns, key: ConnKey, what: &str, e: &PathRefused) {
    if matches!(e, PathRefused::Loop) {
        return;
    }
    if let Some(held) = core.throttles.refused.allow(std::time::Instant::now()) {
        let link = conns.get(key).map(|c| c.label());
        tracing::warn!(link = ?link, held_back = held, "refusing {what} from a federation link: {e}");
    }
}

/// The `max_frame` a peer announced, or ours when it did not say (a broker of an
/// earlier version runs with the same default).
fn peer_max_frame(announced: Option<u64>, ours: usize) -> usize {
    announced.map_or(ours, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Encodes an interest update (`INTEREST` or `NOINTEREST`); other effects encode to
/// nothing.
pub fn encode_effect(effect: &Effect, out: &mut Vec<u8>) {
    match effect {
        Effect::Announce { pattern, path, .. } => encode_interest(out, pattern, path),
        Effect::Withdraw {
            pattern, origin, ..
        } => encode_no_interest(out, pattern, origin),
        Effect::Subscribe(..) | Effect::Unsubscribe(..) => {}
    }
}

/// The `ROUTE` every link receiving `msg` shares: JSON payloads as `message`, others
/// as base64 `data`.
pub fn encode_route_frame(msg: &Msg<'_>, seq: u64, me: &str, out: &mut Vec<u8>) {
    let path = match msg.origin {
        Origin::Routed { path, .. } => Some(path),
        Origin::Client(_) => None,
    };
    let p = msg.payload;
    if p.json {
        if let Ok(text) = std::str::from_utf8(p.bytes) {
            return encode_route(out, msg.channel, seq, path, me, text);
        }
    }
    encode_route_head(out, msg.channel, seq, path, me);
    out.extend_from_slice(b",\"data\":\"");
    base64::encode(p.bytes, out);
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_link_frame;

    #[test]
    fn byte_payloads_cross_links_exactly() {
        let bytes: &[u8] = b"\x00\xffbinary\n";
        let msg = Msg {
            channel: "c.d",
            plain: true,
            payload: Payload { bytes, json: false },
            origin: Origin::Client(ConnKey::from(1)),
        };
        let mut out = Vec::new();
        encode_route_frame(&msg, 9, "leaf", &mut out);
        let frame = parse_link_frame(&out[..out.len() - 1]).expect("valid ROUTE");
        match frame.command {
            Command::Route {
                payload: RoutePayload::Base64(text),
                seq,
                ..
            } => {
                assert_eq!(seq, 9);
                assert_eq!(base64::decode(text.as_bytes()).as_deref(), Some(bytes));
            }
            other => panic!("{other:?}"),
        }
    }
}
