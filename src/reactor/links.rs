//! Federation links in the reactor: dialling upstreams, handshakes, reconnecting,
//! and the broker-only frames.
//!
//! Owns the socket side of federation: opening `--upstream` connections (non-blocking
//! connect, link `HELLO`), turning a connection into a link once both ends agree,
//! carrying out the [`Effect`]s the interest table asks for, handling `ROUTE` frames,
//! and re-dialling a lost upstream with capped exponential backoff and jitter. Which
//! interest goes where is decided by `federation`, never here.

use std::time::{Duration, Instant};

use crate::protocol::Raw;
use mio::net::TcpStream;
use tracing::{debug, info, warn};

use super::Reactor;
use crate::connection::Role;
use crate::federation::Effect;
use crate::federation::RouteVerdict;
use crate::logsafe::{escape_bytes, Escaped};
use crate::protocol::{
    encode_link_hello, parse_link_frame, validate_name, validate_pattern, validate_publish,
    Command, ErrorCode, Hello, Path,
};
use crate::router::ConnId;

/// First wait before re-dialling a lost upstream; doubled per failure up to
/// `--link-backoff-max`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// One `--upstream` and the state of its link.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) addr: std::net::SocketAddr,
    /// The connection, while one is open or opening.
    pub(super) conn: Option<ConnId>,
    /// Failed attempts since the link was last up.
    pub(super) failures: u32,
    /// When to dial again.
    pub(super) retry_at: Option<Instant>,
}

impl Reactor {
    /// Handles one frame from a federation link: the broker-only frames, `PING` and
    /// `STATS`; client commands are ignored (and logged).
    pub(super) fn link_line(&mut self, id: ConnId, line: &[u8]) {
        let frame = match parse_link_frame(line) {
            Ok(frame) => frame,
            Err(e) => {
                warn!(link = ?self.conns.get(id).map(|c| c.label()), code = %e.code, error = %e.message, "ignoring a malformed frame from a federation link");
                return;
            }
        };
        match frame.command {
            Command::Ping => {
                self.reply.clear();
                crate::protocol::encode_pong(&mut self.reply, frame.id);
                self.queue_reply(id);
            }
            Command::Stats => self.stats_reply(id, frame.id),
            Command::Interest { channel, path } => self.on_interest(id, &channel, path),
            Command::NoInterest { channel, origin } => self.on_no_interest(id, &channel, &origin),
            Command::Route {
                channel,
                seq,
                path,
                message,
            } => self.on_route(id, &channel, seq, path, message.get()),
            Command::Welcome { server, max_frame } => self.on_link_welcome(id, &server, max_frame),
            Command::Error { code, text } => {
                warn!(peer = ?self.conns.get(id).map(|c| c.label()), code = %Escaped(&code), text = %Escaped(&text), "link peer sent an error");
            }
            _ => {
                warn!(line = %escape_bytes(line), "ignoring a client command on a federation link");
            }
        }
    }

    /// Dials every upstream; called once at start.
    pub(super) fn start_links(&mut self) {
        for idx in 0..self.upstreams.len() {
            self.dial(idx);
        }
    }

    /// Opens a non-blocking connection to upstream `idx` and queues the link `HELLO`.
    fn dial(&mut self, idx: usize) {
        let addr = self.upstreams[idx].addr;
        self.upstreams[idx].retry_at = None;
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                warn!(upstream = %addr, error = %e, "cannot dial upstream");
                return self.schedule_redial(idx);
            }
        };
        if let Err(e) = self.register_socket(&mut stream) {
            warn!(upstream = %addr, error = %e, "cannot register upstream connection");
            return self.schedule_redial(idx);
        }
        let mut hello = Vec::new();
        encode_link_hello(
            &mut hello,
            self.fed.name(),
            self.settings.max_frame,
            self.settings.upstream_token.as_deref(),
        );
        let id = self.insert_connection(stream, addr, true, |conn| {
            conn.role = Role::Link {
                upstream: Some(idx),
            };
            conn.connecting = true;
            conn.counted = false;
            conn.echo = false;
        });
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.push(&mut self.pool, &hello);
        }
        self.upstreams[idx].conn = Some(id);
        debug!(upstream = %addr, "dialling upstream");
    }

    /// Plans the next attempt for upstream `idx`: `BACKOFF_BASE * 2^failures`, capped,
    /// then scaled by a random factor in [0.5, 1) so that many leaves that lost the
    /// same hub do not all return at once.
    pub(super) fn schedule_redial(&mut self, idx: usize) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let up = &mut self.upstreams[idx];
        up.conn = None;
        let exp = BACKOFF_BASE.saturating_mul(1u32 << up.failures.min(16));
        let cap = exp.min(self.settings.link_backoff_max);
        let delay = cap.mul_f64(0.5 + fastrand::f64() / 2.0);
        up.failures = up.failures.saturating_add(1);
        up.retry_at = Some(Instant::now() + delay);
        info!(upstream = %up.addr, retry_in_ms = delay.as_millis() as u64, attempt = up.failures, "no link to upstream; will dial again");
    }

    /// Dials upstreams whose wait is over.
    pub(super) fn redial_due(&mut self, now: Instant) {
        for idx in 0..self.upstreams.len() {
            let up = &self.upstreams[idx];
            if up.conn.is_none() && up.retry_at.is_some_and(|t| t <= now) {
                self.dial(idx);
            }
        }
    }

    /// The earliest pending re-dial.
    pub(super) fn next_redial(&self) -> Option<Instant> {
        self.upstreams.iter().filter_map(|u| u.retry_at).min()
    }

    /// An event on a connection still completing its TCP handshake. Returns whether the
    /// connection is now usable.
    pub(super) fn finish_connect(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                debug!(upstream = %conn.peer, error = %e, "upstream connect failed");
                self.to_close.push(id);
                return false;
            }
            Ok(None) => {}
        }
        match conn.stream.peer_addr() {
            Ok(_) => {
                conn.connecting = false;
                self.queue_flush(id);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => false,
            Err(e) => {
                debug!(upstream = %conn.peer, error = %e, "upstream connect failed");
                self.to_close.push(id);
                false
            }
        }
    }

    /// A `HELLO` with `link: true`: the peer is a broker opening a link to us.
    pub(super) fn accept_link(&mut self, id: ConnId, hello: &Hello<'_>, id_field: Option<Raw<'_>>) {
        let name = hello.name.as_deref().unwrap_or("");
        if let Err(e) = validate_name(name) {
            return self.fatal_error(
                id,
                ErrorCode::LinkRefused,
                &format!("bad broker name: {e}"),
                id_field,
            );
        }
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if !conn.subs.is_empty() || conn.is_link() {
            return self.fatal_error(
                id,
                ErrorCode::LinkRefused,
                "a connection with subscriptions cannot become a link",
                id_field,
            );
        }
        let peer_addr = conn.peer;
        let max_frame = peer_max_frame(hello.max_frame, self.settings.max_frame);
        match self.fed.link_up(id, name, false, max_frame) {
            Err(e) => {
                warn!(peer = name, addr = %peer_addr, "refusing link: {e}");
                self.fatal_error(id, ErrorCode::LinkRefused, &e.to_string(), id_field);
            }
            Ok(effects) => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.role = Role::Link { upstream: None };
                    conn.echo = false;
                    conn.name = Some(name.into());
                }
                info!(peer = name, addr = %peer_addr, "link up (inbound)");
                self.welcome(id, id_field);
                self.apply_effects(effects);
            }
        }
    }

    /// `WELCOME` on a link we dialled: the upstream accepted us.
    pub(super) fn on_link_welcome(&mut self, id: ConnId, server: &str, max_frame: Option<u64>) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let Role::Link {
            upstream: Some(idx),
        } = conn.role
        else {
            return;
        };
        if self.fed.is_link(id) {
            return; // a second WELCOME changes nothing
        }
        let addr = conn.peer;
        let refused = validate_name(server)
            .map_err(|e| format!("upstream has an invalid name: {e}"))
            .and_then(|_| {
                let max_frame = peer_max_frame(max_frame, self.settings.max_frame);
                self.fed
                    .link_up(id, server, true, max_frame)
                    .map_err(|e| e.to_string())
            });
        match refused {
            Err(reason) => {
                warn!(upstream = %addr, peer = %Escaped(server), "refusing link: {}", Escaped(&reason));
                self.begin_close(id, false);
            }
            Ok(effects) => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.name = Some(server.into());
                }
                self.upstreams[idx].failures = 0;
                info!(upstream = %addr, peer = server, "link up (outbound)");
                self.apply_effects(effects);
            }
        }
    }

    /// Carries out what the interest table decided.
    pub(super) fn apply_effects(&mut self, effects: Vec<crate::federation::Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(to, frame) => {
                    if let Some(conn) = self.conns.get_mut(to) {
                        if self.settings.verbose {
                            debug!(peer = ?conn.name, frame = %String::from_utf8_lossy(&frame[..frame.len() - 1]), "link send");
                        }
                        conn.out.push(&mut self.pool, &frame);
                        self.queue_flush(to);
                    }
                }
                Effect::Subscribe(link, pattern) => {
                    let wildcard = validate_pattern(&pattern).unwrap_or(false);
                    if let Some(conn) = self.conns.get_mut(link) {
                        if conn.find_sub(&pattern).is_none() {
                            self.router.insert(&pattern, wildcard, link);
                            conn.subs
                                .push(crate::connection::Subscription { pattern, wildcard });
                        }
                    }
                }
                Effect::Unsubscribe(link, pattern) => {
                    if let Some(conn) = self.conns.get_mut(link) {
                        if let Some(pos) = conn.find_sub(&pattern) {
                            let sub = conn.subs.swap_remove(pos);
                            self.router.remove(&sub.pattern, sub.wildcard, link);
                        }
                    }
                }
            }
        }
    }

    /// `INTEREST` from a link.
    pub(super) fn on_interest(&mut self, id: ConnId, pattern: &str, path: Path<'_>) {
        if validate_pattern(pattern).is_err() {
            warn!(pattern = %Escaped(pattern), "ignoring INTEREST with an invalid pattern");
            return;
        }
        match self.fed.on_interest(id, pattern, path) {
            Ok(effects) => self.apply_effects(effects),
            Err(e) => self.refused_from_link(id, "INTEREST", &e),
        }
    }

    /// `NOINTEREST` from a link.
    pub(super) fn on_no_interest(&mut self, id: ConnId, pattern: &str, origin: &str) {
        let effects = self.fed.on_no_interest(id, pattern, origin);
        self.apply_effects(effects);
    }

    /// `ROUTE` from a link: refuse what the link may not say, drop duplicates, deliver
    /// locally, forward on.
    pub(super) fn on_route(
        &mut self,
        id: ConnId,
        channel: &str,
        seq: u64,
        path: Path<'_>,
        message: &str,
    ) {
        if validate_publish(channel).is_err() {
            warn!(channel = %Escaped(channel), "ignoring ROUTE with an invalid channel");
            return;
        }
        match self
            .fed
            .accept_route(id, channel, seq, path, message.as_bytes())
        {
            RouteVerdict::Deliver => {
                self.fan_out(None, channel, message, Some((seq, path)));
            }
            RouteVerdict::Duplicate => {}
            RouteVerdict::Refused(e) => self.refused_from_link(id, "ROUTE", &e),
        }
    }

    /// Logs (rate-limited) a frame refused from a link; a path that only went round a
    /// loop is normal in a cyclic topology and is not logged.
    fn refused_from_link(&mut self, id: ConnId, what: &str, e: &crate::federation::PathRefused) {
        if matches!(e, crate::federation::PathRefused::Loop) {
            return;
        }
        if let Some(held) = self.refused_log.allow(Instant::now()) {
            let link = self.conns.get(id).map(|c| c.label());
            warn!(link = ?link, held_back = held, "refusing {what} from a federation link: {e}");
        }
    }
}

/// The `max_frame` a peer announced, or ours when it did not say (a broker of an
/// earlier version runs with the same default).
fn peer_max_frame(announced: Option<u64>, ours: usize) -> usize {
    announced.map_or(ours, |n| usize::try_from(n).unwrap_or(usize::MAX))
}
