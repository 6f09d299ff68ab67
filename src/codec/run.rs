//! Runs of protocol-v1 publishes: consecutive `PUBLISH` frames in one read, by one
//! client, to one channel, delivered together.
//!
//! Owns gathering a run while a read's frames are handled ([`Gather`]) and the JSON
//! frames of a run (every message's `MESSAGE`, back to back). A run holds only
//! publishes that cannot fail or be answered: `ack` false, the channel proved plain by
//! the parser, the client authenticated, `--verbose` off. Any other frame, a publish to
//! another channel, a full run and the end of the read each deliver the run first, so
//! every frame's effects keep their order. It never touches sockets or the router.

use super::json;
use crate::connection::Conns;
use crate::core::{fan_out_run, Core, Run, Turn, RUN_MAX_BYTES};
use crate::ids::ConnKey;
use crate::protocol::{encode_message_bytes, message_len, parse_publish};
use crate::router::same_name;

/// The publishes gathered so far from one read (see the module documentation).
pub(super) struct Gather<'a> {
    data: &'a [u8],
    channel: &'a str,
    /// Payload positions in `data`: borrowed from the turn for the read, given back by
    /// [`Gather::finish`].
    payloads: Vec<(usize, usize)>,
    /// Bytes the run's frames take.
    len: usize,
}

impl<'a> Gather<'a> {
    /// Starts gathering from a read whose bytes are `data`.
    pub(super) fn new(turn: &mut Turn, data: &'a [u8]) -> Gather<'a> {
        let mut payloads = std::mem::take(&mut turn.run);
        payloads.clear();
        Gather {
            data,
            channel: "",
            payloads,
            len: 0,
        }
    }

    /// Handles the frame at `start..end` of the read from JSON client `key`: a publish
    /// joins the run (delivering the run first when it is for another channel or
    /// full), anything else is delivered after the run, through [`json::on_frame`].
    pub(super) fn on_frame(
        &mut self,
        core: &mut Core,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
        (start, end): (usize, usize),
    ) {
        let line = &self.data[start..end];
        let fast = !core.settings.verbose
            && line.first() == Some(&b'{')
            && conns.get(key).is_some_and(|c| c.authenticated());
        let Some(p) = fast.then(|| parse_publish(line)).flatten() else {
            self.deliver(core, conns, turn, key);
            return json::on_frame(core, conns, turn, key, line);
        };
        core.stats.frames_in += 1;
        let text = p.message.get();
        let frame = match (p.ack, p.plain) {
            (false, true) => message_len(p.channel, true, text.as_bytes()),
            _ => None,
        };
        let Some(frame) = frame.filter(|&len| len <= RUN_MAX_BYTES) else {
            self.deliver(core, conns, turn, key);
            return json::publish(core, conns, turn, key, p);
        };
        // The parser borrows `text` from `line`, which lies inside `data`.
        let at = (text.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
        let Some(end) = at
            .checked_add(text.len())
            .filter(|&end| end <= self.data.len())
        else {
            self.deliver(core, conns, turn, key);
            return json::publish(core, conns, turn, key, p);
        };
        if !same_name(p.channel, self.channel) || self.len + frame > RUN_MAX_BYTES {
            self.deliver(core, conns, turn, key);
            self.channel = p.channel;
        }
        self.payloads.push((at, end));
        self.len += frame;
    }

    /// Delivers the run gathered so far, if any.
    pub(super) fn deliver(
        &mut self,
        core: &mut Core,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
    ) {
        if self.payloads.is_empty() {
            return;
        }
        let run = Run {
            channel: self.channel,
            from: key,
            data: self.data,
            payloads: &self.payloads,
        };
        fan_out_run(core, conns, turn, &run);
        self.payloads.clear();
        self.len = 0;
    }

    /// Delivers what is left and gives the turn its buffer back.
    pub(super) fn finish(
        mut self,
        core: &mut Core,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
    ) {
        self.deliver(core, conns, turn, key);
        turn.run = std::mem::take(&mut self.payloads);
    }
}

/// Bytes the `MESSAGE` frames of `run` take, newlines included.
pub fn json_len(run: &Run<'_>) -> usize {
    let each = message_len(run.channel, true, b"").unwrap_or(0);
    run.payloads
        .iter()
        .map(|&(start, end)| each + end - start)
        .sum()
}

/// Appends the `MESSAGE` frame of every message of `run`, in order: the bytes
/// [`json::encode_delivery`] gives each.
pub fn encode_json(run: &Run<'_>, out: &mut Vec<u8>) {
    out.reserve(json_len(run));
    for msg in run.msgs() {
        encode_message_bytes(out, msg.channel, true, msg.payload.bytes);
    }
}
