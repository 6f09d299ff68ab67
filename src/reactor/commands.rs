//! Executing commands: one parsed frame in, replies and deliveries queued out.
//!
//! Owns the semantics of protocol v1 on the broker side: authentication, subscription
//! bookkeeping (idempotent subscribe, exact-text unsubscribe, the per-connection limit),
//! fan-out of a publish (encoded once, queued to every matching connection at most
//! once), and error replies. It only queues output; writing is the flush's job, and
//! closing is deferred to the end of the turn.

use std::rc::Rc;

use crate::protocol::Raw;
use tracing::{info, warn};

use super::Reactor;
use crate::connection::Subscription;
use crate::protocol::{
    encode_error, encode_message, encode_pong, encode_published, encode_route, encode_subscription,
    encode_welcome, parse_frame, validate_pattern, validate_publish, Command, ErrorCode, Hello,
    Path, Welcome,
};
use crate::router::ConnId;

/// MESSAGE frames at least this large are shared between queues by reference instead
/// of copied into each. Measured (fan-out 1 -> 1000): at 1 KiB our copy into the queues
/// was a quarter of the broker's time while the kernel copies the bytes again anyway;
/// below ~1 KiB copying is cheaper than a refcount and an iovec per frame.
const SHARE_THRESHOLD: usize = 1024;

impl Reactor {
    /// Handles one frame (a line without its newline) from connection `id`.
    pub(super) fn handle_line(&mut self, id: ConnId, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return; // blank lines are ignored
        }
        self.stats.frames_in += 1;
        if self.settings.verbose {
            if let Some(conn) = self.conns.get(id) {
                info!(conn = %conn.label(), frame = %String::from_utf8_lossy(line), "received");
            }
        }
        let Some((authenticated, is_link)) =
            self.conns.get(id).map(|c| (c.authenticated, c.is_link()))
        else {
            return;
        };
        let frame = match parse_frame(line) {
            Ok(frame) => frame,
            Err(e) if !authenticated => {
                return self.fatal_error(
                    id,
                    ErrorCode::Unauthorized,
                    "the first frame must be HELLO with a valid token",
                    e.id,
                );
            }
            Err(e) => return self.send_error(id, e.code, &e.message, e.id),
        };
        let id_field = frame.id;
        match frame.command {
            Command::Hello(hello) => self.hello(id, hello, id_field),
            _ if !authenticated => self.fatal_error(
                id,
                ErrorCode::Unauthorized,
                "the first frame must be HELLO with a valid token",
                id_field,
            ),
            Command::Ping => {
                self.reply.clear();
                encode_pong(&mut self.reply, id_field);
                self.queue_reply(id);
            }
            Command::Stats => self.stats_reply(id, id_field),
            Command::Interest { channel, path } if is_link => self.on_interest(id, &channel, path),
            Command::NoInterest { channel, origin } if is_link => {
                self.on_no_interest(id, &channel, &origin)
            }
            Command::Route {
                channel,
                seq,
                path,
                message,
            } if is_link => self.on_route(id, &channel, seq, path, message.get()),
            Command::Welcome { server } if is_link => self.on_link_welcome(id, &server),
            Command::Error { code, text } if is_link => {
                warn!(peer = ?self.conns.get(id).map(|c| c.label()), %code, %text, "link peer sent an error");
            }
            _ if is_link => {
                warn!(line = %String::from_utf8_lossy(line), "ignoring a client command on a federation link");
            }
            Command::Subscribe { channel } => self.subscribe(id, &channel, id_field),
            Command::Unsubscribe { channel } => self.unsubscribe(id, &channel, id_field),
            Command::Publish {
                channel,
                message,
                ack,
            } => {
                if let Err(e) = validate_publish(&channel) {
                    return self.send_error(id, ErrorCode::BadChannel, &e.to_string(), id_field);
                }
                let receivers = self.fan_out(Some(id), &channel, message.get(), None);
                if ack {
                    self.reply.clear();
                    encode_published(&mut self.reply, &channel, receivers, id_field);
                    self.queue_reply(id);
                }
            }
            Command::Interest { .. }
            | Command::NoInterest { .. }
            | Command::Route { .. }
            | Command::Welcome { .. }
            | Command::Error { .. } => {
                // Broker-only frames are not part of the client protocol.
                let name = String::from_utf8_lossy(line);
                let shown = parse_command_name(&name);
                self.send_error(
                    id,
                    ErrorCode::UnknownCommand,
                    &format!("unknown command '{shown}'"),
                    id_field,
                );
            }
        }
    }

    fn hello(&mut self, id: ConnId, hello: Hello<'_>, id_field: Option<Raw<'_>>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(expected) = &self.settings.token {
            let ok = hello.token.as_deref() == Some(expected.as_str());
            if !ok {
                warn!(conn = %conn.label(), "authentication failed");
                return self.fatal_error(
                    id,
                    ErrorCode::Unauthorized,
                    "invalid or missing token",
                    id_field,
                );
            }
        }
        conn.authenticated = true;
        if hello.link {
            return self.accept_link(id, &hello, id_field);
        }
        conn.echo = hello.echo;
        if let Some(name) = hello.name {
            conn.name = Some(name.chars().take(128).collect::<String>().into_boxed_str());
        }
        tracing::debug!(conn = %conn.label(), echo = conn.echo, "hello");
        self.welcome(id, id_field);
    }

    /// Queues `WELCOME`.
    pub(super) fn welcome(&mut self, id: ConnId, id_field: Option<Raw<'_>>) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let welcome = Welcome {
            server: self.fed.name(),
            version: env!("CARGO_PKG_VERSION"),
            max_frame: self.settings.max_frame,
            client_id: conn.client_id,
        };
        self.reply.clear();
        encode_welcome(&mut self.reply, &welcome, id_field);
        self.queue_reply(id);
    }

    fn subscribe(&mut self, id: ConnId, channel: &str, id_field: Option<Raw<'_>>) {
        let wildcard = match validate_pattern(channel) {
            Ok(w) => w,
            Err(e) => return self.send_error(id, ErrorCode::BadChannel, &e.to_string(), id_field),
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.find_sub(channel).is_none() {
            if conn.subs.len() >= self.settings.max_subscriptions {
                let text = format!(
                    "subscription limit of {} per connection reached",
                    self.settings.max_subscriptions
                );
                return self.send_error(id, ErrorCode::Limit, &text, id_field);
            }
            conn.subs.push(Subscription {
                pattern: channel.into(),
                wildcard,
            });
            self.router.insert(channel, wildcard, id);
            let count = conn.subs.len();
            self.reply.clear();
            encode_subscription(&mut self.reply, "SUBSCRIBED", channel, count, id_field);
            self.queue_reply(id);
            let effects = self.fed.local_subscribed(channel);
            return self.apply_effects(effects);
        }
        let count = conn.subs.len();
        self.reply.clear();
        encode_subscription(&mut self.reply, "SUBSCRIBED", channel, count, id_field);
        self.queue_reply(id);
    }

    fn unsubscribe(&mut self, id: ConnId, channel: &str, id_field: Option<Raw<'_>>) {
        if let Err(e) = validate_pattern(channel) {
            return self.send_error(id, ErrorCode::BadChannel, &e.to_string(), id_field);
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut effects = Vec::new();
        if let Some(pos) = conn.find_sub(channel) {
            let sub = conn.subs.swap_remove(pos);
            self.router.remove(&sub.pattern, sub.wildcard, id);
            effects = self.fed.local_unsubscribed(&sub.pattern);
        }
        let count = conn.subs.len();
        self.reply.clear();
        encode_subscription(&mut self.reply, "UNSUBSCRIBED", channel, count, id_field);
        self.queue_reply(id);
        self.apply_effects(effects);
    }

    /// Queues a message to every connection subscribed to something matching
    /// `channel`: a `MESSAGE` to clients and a `ROUTE` to links whose peer has not seen
    /// it. Each frame is encoded at most once. `from` is the publishing client (for
    /// `echo: false`); `routed` the sequence number and path of a message that came
    /// over a link. Returns how many connections it was queued to.
    pub(super) fn fan_out(
        &mut self,
        from: Option<ConnId>,
        channel: &str,
        message: &str,
        routed: Option<(u64, Path<'_>)>,
    ) -> usize {
        if routed.is_none() {
            self.stats.published += 1;
        }
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.router.lookup(channel, &mut matches);
        let mut receivers = 0;
        // Encoded on first use: a MESSAGE for clients, a ROUTE for links.
        let mut message_frame: Option<Option<Rc<[u8]>>> = None;
        let mut route_frame: Option<Option<Rc<[u8]>>> = None;
        let path = routed.map(|r| r.1);
        for &cid in &matches {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            if !conn.receives() || (Some(cid) == from && !conn.echo) {
                continue;
            }
            let (buf, shared) = if conn.is_link() {
                if !self.fed.may_route(cid, path) {
                    continue;
                }
                let shared = route_frame.get_or_insert_with(|| {
                    let seq = routed.map_or_else(|| self.fed.next_seq(), |r| r.0);
                    self.route.clear();
                    encode_route(
                        &mut self.route,
                        channel,
                        seq,
                        path,
                        self.fed.name(),
                        message,
                    );
                    (self.route.len() >= SHARE_THRESHOLD).then(|| Rc::from(&self.route[..]))
                });
                self.fed.count_out(cid);
                (&self.route, shared)
            } else {
                let shared = message_frame.get_or_insert_with(|| {
                    self.frame.clear();
                    encode_message(&mut self.frame, channel, message);
                    (self.frame.len() >= SHARE_THRESHOLD).then(|| Rc::from(&self.frame[..]))
                });
                (&self.frame, shared)
            };
            match shared {
                Some(frame) => conn.out.push_shared(frame),
                None => conn.out.push(&mut self.pool, buf),
            }
            if conn.out.pending() > self.settings.max_pending {
                self.slow_consumer(cid);
                continue;
            }
            receivers += 1;
            if !conn.flush_queued {
                conn.flush_queued = true;
                self.flush_list.push(cid);
            }
        }
        self.stats.delivered += receivers as u64;
        self.matches = matches;
        receivers
    }

    /// A connection's unsent output passed `--max-pending`: drop what it has not
    /// started receiving, tell it why, and close it.
    fn slow_consumer(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.is_link() {
            warn!(
                link = %conn.label(),
                max_pending = self.settings.max_pending,
                "federation link is a slow consumer: unsent output over the limit; closing it (a dialled link reconnects)"
            );
            self.fed.count_slow(id);
        } else {
            warn!(
                conn = %conn.label(),
                max_pending = self.settings.max_pending,
                "slow consumer: unsent output over the limit; closing"
            );
        }
        conn.out.cut_after_current_frame();
        self.fatal_error(
            id,
            ErrorCode::SlowConsumer,
            &format!("unsent output exceeded {} bytes", self.settings.max_pending),
            None,
        );
    }

    /// Queues `self.reply` to `id`.
    fn queue_reply(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.push(&mut self.pool, &self.reply);
            if conn.out.pending() > self.settings.max_pending {
                return self.slow_consumer(id);
            }
        }
        self.queue_flush(id);
    }

    /// Queues an `ERROR` frame; the connection stays open.
    pub(super) fn send_error(
        &mut self,
        id: ConnId,
        code: ErrorCode,
        text: &str,
        id_field: Option<Raw<'_>>,
    ) {
        self.stats.count_error(code);
        self.reply.clear();
        encode_error(&mut self.reply, code, text, id_field);
        self.queue_reply(id);
    }

    /// Queues an `ERROR` frame (echoing the frame's `id` when it had one) and closes
    /// the connection after it is written.
    pub(super) fn fatal_error(
        &mut self,
        id: ConnId,
        code: ErrorCode,
        text: &str,
        id_field: Option<Raw<'_>>,
    ) {
        match self.conns.get(id) {
            Some(conn) if conn.receives() => {
                tracing::info!(conn = %conn.label(), code = %code, "closing connection: {text}");
            }
            _ => return, // gone, or already closing with its final error queued
        }
        self.stats.count_error(code);
        self.reply.clear();
        encode_error(&mut self.reply, code, text, id_field);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.push(&mut self.pool, &self.reply);
        }
        self.begin_close(id, true);
    }
}

/// The `command` value of a frame known to be valid, for error texts.
fn parse_command_name(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| {
            v.get("command")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect()
}

impl Reactor {
    /// Replies to `STATS` with the broker's counters, the router's and each link's.
    fn stats_reply(&mut self, id: ConnId, id_field: Option<Raw<'_>>) {
        let r = self.router.stats();
        let errors: serde_json::Map<String, serde_json::Value> = ErrorCode::ALL
            .iter()
            .map(|&c| (c.as_str().to_string(), self.stats.errors_of(c).into()))
            .collect();
        let mut v = serde_json::json!({
            "command": "STATS",
            "server": self.fed.name(),
            "version": env!("CARGO_PKG_VERSION"),
            "connections": self.clients,
            "accepted": self.stats.accepted,
            "refused": self.stats.refused,
            "closed": self.stats.closed,
            "frames_in": self.stats.frames_in,
            "published": self.stats.published,
            "delivered": self.stats.delivered,
            "bytes_in": self.stats.bytes_in,
            "bytes_out": self.stats.bytes_out,
            "errors": errors,
            "router": {
                "exact_channels": r.exact_channels,
                "wildcard_subscriptions": r.wildcard_subscriptions,
                "inserts": r.inserts,
                "removes": r.removes,
                "lookups": r.lookups,
                "matches": r.matches,
            },
            "links": self.fed.link_info(),
            "duplicates_dropped": self.fed.duplicates(),
        });
        if let Some(raw) = id_field {
            if let Ok(idv) = serde_json::from_str::<serde_json::Value>(raw.get()) {
                v["id"] = idv;
            }
        }
        self.reply.clear();
        if serde_json::to_writer(&mut self.reply, &v).is_ok() {
            self.reply.push(b'\n');
            self.queue_reply(id);
        }
    }
}
