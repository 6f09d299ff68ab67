//! Executing commands: one parsed frame in, replies and deliveries queued out.
//!
//! Owns the semantics of protocol v1 on the broker side: authentication, subscription
//! bookkeeping (idempotent subscribe, exact-text unsubscribe, the per-connection limit),
//! fan-out of a publish (encoded once, queued to every matching connection at most
//! once), and error replies. It only queues output; writing is the flush's job, and
//! closing is deferred to the end of the turn.

use std::rc::Rc;

use serde_json::value::RawValue;
use tracing::{info, warn};

use super::Reactor;
use crate::connection::Subscription;
use crate::protocol::{
    encode_error, encode_message, encode_pong, encode_published, encode_subscription,
    encode_welcome, parse_frame, validate_pattern, validate_publish, Command, ErrorCode, Hello,
    Welcome,
};
use crate::router::ConnId;

/// MESSAGE frames at least this large are shared between queues by reference instead
/// of copied into each (8 KiB: below it a memcpy is cheaper than the refcount and the
/// extra iovec).
const SHARE_THRESHOLD: usize = 8 * 1024;

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
        let authenticated = self.conns.get(id).is_some_and(|c| c.authenticated);
        let frame = match parse_frame(line) {
            Ok(frame) => frame,
            Err(e) if !authenticated => {
                let _ = e;
                return self.fatal_error(
                    id,
                    ErrorCode::Unauthorized,
                    "the first frame must be HELLO with a valid token",
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
            ),
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
                let receivers = self.publish(id, &channel, message.get());
                if ack {
                    self.reply.clear();
                    encode_published(&mut self.reply, &channel, receivers, id_field);
                    self.queue_reply(id);
                }
            }
            Command::Ping => {
                self.reply.clear();
                encode_pong(&mut self.reply, id_field);
                self.queue_reply(id);
            }
        }
    }

    fn hello(&mut self, id: ConnId, hello: Hello<'_>, id_field: Option<&RawValue>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(expected) = &self.settings.token {
            let ok = hello.token.as_deref() == Some(expected.as_str());
            if !ok {
                warn!(conn = %conn.label(), "authentication failed");
                return self.fatal_error(id, ErrorCode::Unauthorized, "invalid or missing token");
            }
        }
        conn.authenticated = true;
        conn.echo = hello.echo;
        if let Some(name) = hello.name {
            conn.name = Some(name.chars().take(128).collect::<String>().into_boxed_str());
        }
        tracing::debug!(conn = %conn.label(), echo = conn.echo, "hello");
        let welcome = Welcome {
            server: &self.settings.name,
            version: env!("CARGO_PKG_VERSION"),
            max_frame: self.settings.max_frame,
            client_id: conn.client_id,
        };
        self.reply.clear();
        encode_welcome(&mut self.reply, &welcome, id_field);
        self.queue_reply(id);
    }

    fn subscribe(&mut self, id: ConnId, channel: &str, id_field: Option<&RawValue>) {
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
        }
        let count = conn.subs.len();
        self.reply.clear();
        encode_subscription(&mut self.reply, "SUBSCRIBED", channel, count, id_field);
        self.queue_reply(id);
    }

    fn unsubscribe(&mut self, id: ConnId, channel: &str, id_field: Option<&RawValue>) {
        if let Err(e) = validate_pattern(channel) {
            return self.send_error(id, ErrorCode::BadChannel, &e.to_string(), id_field);
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(pos) = conn.find_sub(channel) {
            let sub = conn.subs.swap_remove(pos);
            self.router.remove(&sub.pattern, sub.wildcard, id);
        }
        let count = conn.subs.len();
        self.reply.clear();
        encode_subscription(&mut self.reply, "UNSUBSCRIBED", channel, count, id_field);
        self.queue_reply(id);
    }

    /// Queues one MESSAGE to every connection subscribed to something matching
    /// `channel`; returns how many it was queued to.
    pub(super) fn publish(&mut self, from: ConnId, channel: &str, message: &str) -> usize {
        self.stats.published += 1;
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.router.lookup(channel, &mut matches);
        if matches.is_empty() {
            self.matches = matches;
            return 0;
        }
        self.frame.clear();
        encode_message(&mut self.frame, channel, message);
        let shared: Option<Rc<[u8]>> =
            (self.frame.len() >= SHARE_THRESHOLD).then(|| Rc::from(&self.frame[..]));
        let mut receivers = 0;
        for &cid in &matches {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            if !conn.receives() || (cid == from && !conn.echo) {
                continue;
            }
            match &shared {
                Some(frame) => conn.out.push_shared(frame),
                None => conn.out.push(&self.frame),
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
        warn!(
            conn = %conn.label(),
            max_pending = self.settings.max_pending,
            "slow consumer: unsent output over the limit; closing"
        );
        conn.out.cut_after_current_frame();
        self.fatal_error(
            id,
            ErrorCode::SlowConsumer,
            &format!("unsent output exceeded {} bytes", self.settings.max_pending),
        );
    }

    /// Queues `self.reply` to `id`.
    fn queue_reply(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.push(&self.reply);
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
        id_field: Option<&RawValue>,
    ) {
        self.stats.count_error(code);
        self.reply.clear();
        encode_error(&mut self.reply, code, text, id_field);
        self.queue_reply(id);
    }

    /// Queues an `ERROR` frame and closes the connection after it is written.
    pub(super) fn fatal_error(&mut self, id: ConnId, code: ErrorCode, text: &str) {
        match self.conns.get(id) {
            Some(conn) if conn.receives() => {
                tracing::info!(conn = %conn.label(), code = %code, "closing connection: {text}");
            }
            _ => return, // gone, or already closing with its final error queued
        }
        self.stats.count_error(code);
        self.reply.clear();
        encode_error(&mut self.reply, code, text, None);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.push(&self.reply);
        }
        self.begin_close(id, true);
    }
}
