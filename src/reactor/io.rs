//! Moving bytes: transport -> codec on the read side, write queue -> transport on the
//! write side.
//!
//! Owns the read path (the shared read buffer, partial frames, read budgets, EOF and
//! half-close), the write path (the end-of-turn flush of every connection with output),
//! and what happens when a closing connection's output is drained. mio is
//! edge-triggered: every path here reads or writes until `WouldBlock`, or remembers
//! (read list, flush list) that work is left. What the bytes mean is the codec's
//! business, never this file's.

use std::io;

use mio::event::Event;
use tracing::debug;

use super::Reactor;
use crate::codec;
use crate::connection::Stage;
use crate::core::{CLOSE_GRACE, READ_CHUNK};
use crate::ids::ConnKey;

/// Bytes read from one connection per loop turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per flush before others get their turn.
const WRITE_BUDGET: usize = 1024 * 1024;

/// What a read attempt found.
enum ReadOutcome {
    /// Bytes arrived and were handled.
    Data(usize),
    /// Nothing more to read for now.
    Drained,
    /// The peer closed its side.
    Eof,
    /// The socket failed.
    Failed(io::Error),
}

impl Reactor {
    /// A readiness event on connection `key`.
    pub(super) fn on_event(&mut self, key: ConnKey, event: &Event) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.stage() == Stage::Dialing)
            && !self.finish_connect(key)
        {
            return;
        }
        // A connection already due for a deferred read this turn gets that one read
        // pass, not two.
        let deferred = self.conns.get(key).is_some_and(|c| c.read_marked());
        if !deferred && (event.is_readable() || event.is_read_closed() || event.is_error()) {
            self.on_readable(key);
        }
        if event.is_writable() {
            if let Some(conn) = self.conns.get_mut(key) {
                self.turn.mark_flush(conn);
            }
        }
    }

    /// Reads from a readable connection until `WouldBlock`, EOF, or its budget for this
    /// turn is spent (then it is put on the read list for the next turn).
    pub(super) fn on_readable(&mut self, key: ConnKey) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            conn.unmark_read();
            match conn.stage() {
                Stage::Open | Stage::AwaitingHello { .. } => {}
                Stage::Dialing | Stage::PeerClosed => return,
                Stage::Closing { .. } => return self.discard_input(key),
            }
            match self.read_and_handle(key) {
                ReadOutcome::Data(n) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        if let Some(conn) = self.conns.get_mut(key) {
                            self.turn.mark_read(conn);
                        }
                        return;
                    }
                }
                ReadOutcome::Drained => return,
                ReadOutcome::Eof => return self.on_peer_eof(key),
                ReadOutcome::Failed(e) => {
                    debug!(error = %e, "read failed; closing");
                    self.turn.close_later(key);
                    return;
                }
            }
        }
    }

    /// One `read` and the handling of every complete frame it completed.
    fn read_and_handle(&mut self, key: ConnKey) -> ReadOutcome {
        let Some(conn) = self.conns.get_mut(key) else {
            return ReadOutcome::Drained;
        };
        if !conn.has_partial() {
            // Common case: read into the shared buffer; keep only an incomplete tail.
            let mut buf = std::mem::take(&mut self.turn.rbuf);
            let outcome = match conn.transport().read(&mut buf[..]) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    let used = codec::on_bytes(
                        &mut self.core,
                        &mut self.conns,
                        &mut self.turn,
                        key,
                        &buf[..n],
                    );
                    if used < n {
                        if let Some(conn) = self.conns.get_mut(key) {
                            if conn.handles_input() {
                                let rest = buf[used..n].to_vec();
                                conn.put_partial(rest, &mut self.core.input_held, self.turn.now);
                            }
                        }
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Drained,
                Err(e) => ReadOutcome::Failed(e),
            };
            self.turn.rbuf = buf;
            outcome
        } else {
            // A frame is in progress: read after it in the connection's own buffer.
            let limit = conn.wire().frame_limit(self.core.settings.max_frame);
            let mut buf = conn.take_partial(&mut self.core.input_held);
            let len = buf.len();
            buf.resize(len + READ_CHUNK, 0);
            let outcome = match conn.transport().read(&mut buf[len..]) {
                Ok(0) => {
                    buf.truncate(len);
                    ReadOutcome::Eof
                }
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    buf.truncate(len + n);
                    // The bytes kept before hold no newline: unless this read brought one
                    // or the frame outgrew its limit, nothing completes, and rescanning
                    // the whole unfinished frame on every read would make a large frame
                    // cost its size squared.
                    let pending =
                        memchr::memchr(b'\n', &buf[len..]).is_none() && buf.len() <= limit;
                    if !pending {
                        let used = codec::on_bytes(
                            &mut self.core,
                            &mut self.conns,
                            &mut self.turn,
                            key,
                            &buf,
                        );
                        buf.drain(..used);
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    buf.truncate(len);
                    ReadOutcome::Drained
                }
                Err(e) => ReadOutcome::Failed(e),
            };
            // Keep the unfinished frame while the connection still takes input.
            if !buf.is_empty() && !matches!(outcome, ReadOutcome::Failed(_)) {
                if let Some(conn) = self.conns.get_mut(key) {
                    if conn.handles_input() {
                        if buf.capacity() > 2 * READ_CHUNK.max(buf.len()) {
                            buf.shrink_to(READ_CHUNK.max(buf.len()));
                        }
                        conn.put_partial(buf, &mut self.core.input_held, self.turn.now);
                    }
                }
            }
            outcome
        }
    }

    /// The peer half-closed: let the codec handle what it left unfinished, then close
    /// once every reply is written. Its subscriptions end now (as Redis and NATS do).
    fn on_peer_eof(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let last = conn.take_partial(&mut self.core.input_held);
        codec::on_eof(&mut self.core, &mut self.conns, &mut self.turn, key, &last);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some((linger, _)) = conn.closing_mut() {
            *linger = false;
        } else if conn.advance(Stage::PeerClosed) {
            self.core
                .drop_subscriptions(&mut self.conns, &mut self.turn, key);
        }
        if let Some(conn) = self.conns.get_mut(key) {
            self.turn.mark_flush(conn);
        }
    }

    /// A closing connection's input is read and dropped, so that closing it later does
    /// not reset the connection and destroy the final frames in flight.
    pub(super) fn discard_input(&mut self, key: ConnKey) {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.closing_mut().is_none() {
                return;
            }
            let read = conn.transport().read(&mut self.turn.rbuf[..]);
            let empty = conn.out().is_empty();
            let Some((linger, shut)) = conn.closing_mut() else {
                return;
            };
            match read {
                Ok(0) => {
                    *linger = false;
                    if *shut || empty {
                        self.turn.close_later(key);
                    }
                    return;
                }
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.turn.close_later(key);
                    return;
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            self.turn.mark_read(conn);
        }
    }

    /// Reads again, this turn, connections whose budget ran out last turn.
    pub(super) fn run_deferred_reads(&mut self) {
        for key in self.turn.take_reads() {
            if self.conns.get(key).is_some_and(|c| c.read_marked()) {
                self.on_readable(key);
            }
        }
    }

    /// Writes queued output of every connection on the flush list (Redis's "write before
    /// sleeping"). A connection the kernel refuses waits for its writable event; one
    /// whose budget ran out stays on the list for the next turn.
    pub(super) fn flush_all(&mut self) {
        let list = self.turn.take_flush();
        for &key in &list {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.unmark_flush();
            if conn.stage() == Stage::Dialing {
                continue; // flushed once the TCP handshake completes
            }
            let (transport, out) = conn.transport_and_out();
            if !out.is_empty() || transport.wants_write() {
                let result = out.write_to(&mut self.core.pool, transport, WRITE_BUDGET);
                match result {
                    Ok(done) => {
                        self.core.stats.bytes_out += done.written as u64;
                        conn.note_flush(done.written, self.turn.now, CLOSE_GRACE);
                        if !done.blocked && !conn.out().is_empty() {
                            self.turn.mark_flush(conn);
                            continue;
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "write failed; closing");
                        self.turn.close_later(key);
                        continue;
                    }
                }
            }
            if conn.out().is_empty() {
                self.on_drained(key);
            }
        }
        self.turn.return_flush(list);
    }

    /// A connection's output is fully written: finish closing it if it was closing.
    fn on_drained(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.stage() == Stage::PeerClosed {
            self.turn.close_later(key);
            return;
        }
        let Some((linger, shut)) = conn.closing_mut() else {
            return;
        };
        if !*linger {
            self.turn.close_later(key);
        } else if !*shut {
            *shut = true;
            let _ = conn.transport().shutdown_write();
            // The peer's EOF may already be waiting; edge-triggered readiness would not
            // tell us again.
            self.discard_input(key);
        }
    }
}
