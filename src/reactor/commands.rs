//! Executing commands: one parsed frame in, replies and deliveries queued out.
//!
//! Owns the semantics of protocol v1 on the broker side: authentication, subscription
//! bookkeeping (idempotent subscribe, exact-text unsubscribe, the per-connection limit),
//! fan-out of a publish (encoded once, queued to every matching connection at most
//! once), and error replies. It only queues output; writing is the flush's job, and
//! closing is deferred to the end of the turn.

use std::rc::Rc;
use std::time::Instant;

use crate::protocol::Raw;
use tracing::{info, warn};

use crate::logsafe::escape_bytes;

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
        let Some((authenticated, is_link)) =
            self.conns.get(id).map(|c| (c.authenticated, c.is_link()))
        else {
            return;
        };
        if self.settings.verbose {
            if let Some(conn) = self.conns.get(id) {
                info!(conn = %conn.label(), frame = %escape_bytes(line), "received");
            }
        }
        if is_link {
            return self.link_line(id, line);
        }
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
            // `parse_frame` refuses broker-only commands from clients.
            Command::Interest { .. }
            | Command::NoInterest { .. }
            | Command::Route { .. }
            | Command::Welcome { .. }
            | Command::Error { .. } => {}
        }
    }

    /// `HELLO`: checks the credential, then sets the client's options or turns the
    /// connection into a link. A link `HELLO` must carry the link credential
    /// (`--link-token`, else `--token`) when the broker has one. On a connection that
    /// already authenticated, a client `HELLO` without a token only changes `name` and
    /// `echo`; a wrong token is refused and closes the connection.
    fn hello(&mut self, id: ConnId, hello: Hello<'_>, id_field: Option<Raw<'_>>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let expected = match hello.link {
            true => self
                .settings
                .link_token
                .as_ref()
                .or(self.settings.token.as_ref()),
            false => self.settings.token.as_ref(),
        };
        if let Some(expected) = expected {
            let given = hello.token.as_deref();
            let renewing = conn.authenticated && !hello.link && given.is_none();
            if !renewing && given != Some(expected.as_str()) {
                warn!(conn = %conn.label(), link = hello.link, "authentication failed");
                return self.fatal_error(
                    id,
                    ErrorCode::Unauthorized,
                    "invalid or missing token",
                    id_field,
                );
            }
        }
        if let Some(name) = &hello.name {
            if let Err(text) = check_client_name(name) {
                return self.send_error(id, ErrorCode::BadField, text, id_field);
            }
        }
        conn.authenticated = true;
        if hello.link {
            return self.accept_link(id, &hello, id_field);
        }
        conn.echo = hello.echo;
        if let Some(name) = hello.name {
            conn.name = Some(name.into_owned().into_boxed_str());
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
                let limit = self.fed.peer_frame_limit(cid).unwrap_or(usize::MAX);
                if self.route.len() - 1 > limit {
                    let count = self.fed.count_too_large(cid);
                    if let Some(held) = self.too_large_log.allow(Instant::now()) {
                        warn!(
                            link = %conn.label(),
                            bytes = self.route.len() - 1,
                            limit,
                            not_sent_so_far = count,
                            held_back = held,
                            "a message is larger than the link's peer accepts (its --max-frame is smaller); not sent on that link"
                        );
                    }
                    continue;
                }
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
    pub(super) fn queue_reply(&mut self, id: ConnId) {
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

/// Longest client name accepted in `HELLO`, in bytes.
pub(super) const MAX_CLIENT_NAME: usize = 128;

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

impl Reactor {
    /// Replies to `STATS` with the broker's counters, the router's and each link's.
    pub(super) fn stats_reply(&mut self, id: ConnId, id_field: Option<Raw<'_>>) {
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
