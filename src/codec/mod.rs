//! Wire protocols: bytes in, core operations; outcomes, frames out.
//!
//! Owns the contract between a connection's bytes and the codec-neutral [`core`]:
//! which wire a connection speaks ([`Wire`]), how its byte stream splits into frames,
//! what each frame asks of the core, how each outcome and delivery is encoded, the rule
//! of how many copies of a message a connection gets ([`Delivery`]), and each wire's
//! goodbye for a [`CloseReason`]. Codecs never touch sockets, the router's internals or
//! other connections' state; they reach other connections only through the core.
//!
//! - [`json`]: protocol v1, newline-delimited JSON (the client protocol).
//! - [`link`]: the broker-to-broker frames of federation (the same framing).
//!
//! [`core`]: crate::core

mod base64;
pub mod json;
pub mod link;
pub mod run;

use crate::connection::Conns;
use crate::core::{CloseReason, Core, Turn};
use crate::ids::ConnKey;
use crate::protocol::{scan_frame, ErrorCode, Raw, Scan, LINK_ENVELOPE};

/// The wire protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Protocol v1: newline-delimited JSON.
    Json,
    /// A federation link: protocol v1 framing plus the broker-only frames.
    Link,
}

/// How many copies of one message a connection receives when several of its
/// subscriptions match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// One per connection (protocol v1, MQTT, links).
    PerConnection,
    /// One per matching subscription (NATS, Redis).
    PerSubscription,
}

impl Wire {
    /// Number of wires (the size of per-wire tables).
    pub const COUNT: usize = 2;

    /// A dense index for per-wire tables.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire's delivery rule.
    #[inline]
    pub fn delivery(self) -> Delivery {
        match self {
            Wire::Json | Wire::Link => Delivery::PerConnection,
        }
    }

    /// The longest frame a connection of this wire may send: `--max-frame`, plus the
    /// envelope a `ROUTE` adds around a message a client was allowed to publish.
    pub fn frame_limit(self, max_frame: usize) -> usize {
        match self {
            Wire::Json => max_frame,
            Wire::Link => max_frame + LINK_ENVELOPE,
        }
    }
}

/// Handles every complete frame at the start of `data` from connection `key`; returns
/// the bytes used (the rest is an unfinished frame). Stops early when the connection
/// stops taking input (an error closed it).
pub fn on_bytes(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    data: &[u8],
) -> usize {
    let mut run = run::Gather::new(turn, data);
    let used = frames(core, conns, turn, key, data, &mut run);
    run.finish(core, conns, turn, key);
    used
}

/// [`on_bytes`]' loop; a JSON client's publishes gather into `run`, which is delivered
/// before any other frame is handled (and by the caller at the end).
fn frames<'a>(
    core: &mut Core,
    conns: &mut Conns,
    turn: &mut Turn,
    key: ConnKey,
    data: &'a [u8],
    run: &mut run::Gather<'a>,
) -> usize {
    let mut pos = 0;
    while pos < data.len() {
        let Some(wire) = conns.get(key).map(|c| c.wire()) else {
            return data.len();
        };
        let limit = wire.frame_limit(core.settings.max_frame);
        match scan_frame(&data[pos..], limit) {
            Scan::Frame { line, consumed } => {
                match wire {
                    Wire::Json => {
                        run.on_frame(core, conns, turn, key, (pos + line.0, pos + line.1))
                    }
                    Wire::Link => {
                        let line = &data[pos + line.0..pos + line.1];
                        link::on_frame(core, conns, turn, key, line)
                    }
                }
                pos += consumed;
                if !conns.get(key).is_some_and(|c| c.handles_input()) {
                    return data.len();
                }
            }
            Scan::Incomplete => break,
            Scan::TooLarge => {
                run.deliver(core, conns, turn, key);
                core.close(conns, turn, key, &CloseReason::FrameTooLarge { limit });
                return data.len();
            }
        }
    }
    pos
}

/// The peer half-closed with `rest` unfinished: protocol v1 handles a final line
/// without its newline as the frame it evidently is.
pub fn on_eof(core: &mut Core, conns: &mut Conns, turn: &mut Turn, key: ConnKey, rest: &[u8]) {
    if rest.is_empty() {
        return;
    }
    match conns.get(key).map(|c| c.wire()) {
        Some(Wire::Json) => json::on_frame(core, conns, turn, key, rest),
        Some(Wire::Link) => link::on_frame(core, conns, turn, key, rest),
        None => {}
    }
}

/// Encodes `wire`'s goodbye for `reason` into `out` (echoing the `id` of the frame
/// that caused it, when there is one); returns the error code to count, if the
/// goodbye is an `ERROR`.
pub fn encode_goodbye(
    wire: Wire,
    reason: &CloseReason,
    id: Option<Raw<'_>>,
    out: &mut Vec<u8>,
) -> Option<ErrorCode> {
    match wire {
        Wire::Json | Wire::Link => json::encode_goodbye(reason, id, out),
    }
}
