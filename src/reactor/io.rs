//! Socket I/O for connections: reading into frames, writing queued output.
//!
//! Owns the read path (shared read buffer, partial frames, read budgets, EOF) and the
//! write path (the end-of-turn flush of every connection with output, and what happens
//! when a connection's output is drained). mio is edge-triggered: every path here reads
//! or writes until `WouldBlock`, or remembers (read list, flush list) that work is left.

use std::io::{self, Read};
use std::net::Shutdown;

use tracing::debug;

use super::{Reactor, READ_BUDGET, READ_CHUNK, WRITE_BUDGET};
use crate::connection::Phase;
use crate::protocol::{scan_frame, ErrorCode, Scan, LINK_ENVELOPE};
use crate::router::ConnId;

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
    /// Reads from a readable connection until `WouldBlock`, EOF, or its budget for this
    /// turn is spent (then it is put on the read list for the next turn).
    pub(super) fn on_readable(&mut self, id: ConnId) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            conn.read_queued = false;
            match conn.phase {
                Phase::Open => {}
                Phase::PeerClosed => return,
                Phase::Closing { .. } => return self.discard_input(id),
            }
            match self.read_and_handle(id) {
                ReadOutcome::Data(n) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.queue_read(id);
                        return;
                    }
                }
                ReadOutcome::Drained => return,
                ReadOutcome::Eof => return self.on_peer_eof(id),
                ReadOutcome::Failed(e) => {
                    debug!(error = %e, "read failed; closing");
                    self.to_close.push(id);
                    return;
                }
            }
        }
    }

    /// One `read` and the handling of every complete frame it completed.
    fn read_and_handle(&mut self, id: ConnId) -> ReadOutcome {
        let Some(conn) = self.conns.get_mut(id) else {
            return ReadOutcome::Drained;
        };
        if conn.partial.is_empty() {
            // Common case: read into the shared buffer; keep only an incomplete tail.
            let mut buf = std::mem::take(&mut self.rbuf);
            let outcome = match read_some(&mut conn.stream, &mut buf[..]) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    let used = self.handle_bytes(id, &buf[..n]);
                    if used < n {
                        if let Some(conn) = self.conns.get_mut(id) {
                            if conn.handles_input() {
                                conn.partial.extend_from_slice(&buf[used..n]);
                            }
                        }
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Drained,
                Err(e) => ReadOutcome::Failed(e),
            };
            self.rbuf = buf;
            outcome
        } else {
            // A frame is in progress: read after it in the connection's own buffer.
            let mut buf = std::mem::take(&mut conn.partial);
            let len = buf.len();
            buf.resize(len + READ_CHUNK, 0);
            let outcome = match read_some(&mut conn.stream, &mut buf[len..]) {
                Ok(0) => {
                    buf.truncate(len);
                    ReadOutcome::Eof
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    buf.truncate(len + n);
                    let used = self.handle_bytes(id, &buf);
                    buf.drain(..used);
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
                if let Some(conn) = self.conns.get_mut(id) {
                    if conn.handles_input() {
                        if buf.capacity() > 2 * READ_CHUNK.max(buf.len()) {
                            buf.shrink_to(READ_CHUNK.max(buf.len()));
                        }
                        conn.partial = buf;
                    }
                }
            }
            outcome
        }
    }

    /// Handles every complete frame at the start of `data`; returns the bytes used.
    /// Stops early when the connection stops taking input (an error closed it).
    fn handle_bytes(&mut self, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        let limit = self.frame_limit(id);
        while pos < data.len() {
            match scan_frame(&data[pos..], limit) {
                Scan::Frame { line, consumed } => {
                    self.handle_line(id, &data[pos + line.0..pos + line.1]);
                    pos += consumed;
                    if !self.conns.get(id).is_some_and(|c| c.handles_input()) {
                        return data.len();
                    }
                }
                Scan::Incomplete => break,
                Scan::TooLarge => {
                    self.fatal_error(
                        id,
                        ErrorCode::FrameTooLarge,
                        &format!("frame exceeds {limit} bytes"),
                        None,
                    );
                    return data.len();
                }
            }
        }
        pos
    }

    /// The longest frame connection `id` may send: `--max-frame`, plus the link
    /// envelope on a federation link (a `ROUTE` wraps a message a client was allowed to
    /// publish). A link whose role is set keeps this limit for its whole life.
    fn frame_limit(&self, id: ConnId) -> usize {
        match self.conns.get(id) {
            Some(c) if c.is_link() => self.settings.max_frame + LINK_ENVELOPE,
            _ => self.settings.max_frame,
        }
    }

    /// The peer half-closed: handle a final unterminated frame, then close once every
    /// reply is written.
    fn on_peer_eof(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let last = std::mem::take(&mut conn.partial);
        if !last.is_empty() {
            // A last line without its newline: handle it as the frame it evidently is.
            self.handle_line(id, &last);
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match &mut conn.phase {
            Phase::Open => {
                conn.phase = Phase::PeerClosed;
                // It sends nothing more and is closed once its replies are out: no new
                // messages for it (Redis and NATS close a half-closed client too).
                self.drop_subscriptions(id);
            }
            Phase::Closing { linger, .. } => *linger = false,
            Phase::PeerClosed => {}
        }
        self.queue_flush(id);
    }

    /// A closing connection's input is read and dropped, so that closing it later does
    /// not reset the connection and destroy the final frames in flight.
    pub(super) fn discard_input(&mut self, id: ConnId) {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            let Phase::Closing { linger, shut, .. } = &mut conn.phase else {
                return;
            };
            match read_some(&mut conn.stream, &mut self.rbuf[..]) {
                Ok(0) => {
                    *linger = false;
                    if *shut || conn.out.is_empty() {
                        self.to_close.push(id);
                    }
                    return;
                }
                Ok(n) => budget = budget.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.to_close.push(id);
                    return;
                }
            }
        }
        self.queue_read(id);
    }

    /// Reads again, next turn, connections whose budget ran out this turn.
    pub(super) fn run_deferred_reads(&mut self) {
        if self.read_list.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.read_list);
        for &id in &list {
            if self.conns.get(id).is_some_and(|c| c.read_queued) {
                self.on_readable(id);
            }
        }
    }

    /// Remembers to read `id` again next turn.
    fn queue_read(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            if !conn.read_queued {
                conn.read_queued = true;
                self.read_list.push(id);
            }
        }
    }

    /// Puts `id` on this turn's flush list.
    pub(super) fn queue_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            if !conn.flush_queued {
                conn.flush_queued = true;
                self.flush_list.push(id);
            }
        }
    }

    /// Writes queued output of every connection on the flush list (Redis's "write before
    /// sleeping"). A connection the kernel refuses waits for its writable event; one
    /// whose budget ran out stays on the list for the next turn.
    pub(super) fn flush_all(&mut self) {
        let mut list = std::mem::take(&mut self.flush_list);
        for &id in &list {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            conn.flush_queued = false;
            if conn.connecting {
                continue; // flushed once the TCP handshake completes
            }
            if !conn.out.is_empty() {
                match conn
                    .out
                    .write_to(&mut self.pool, &mut conn.stream, WRITE_BUDGET)
                {
                    Ok(done) => {
                        self.stats.bytes_out += done.written as u64;
                        if !done.blocked && !conn.out.is_empty() {
                            self.queue_flush(id);
                            continue;
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "write failed; closing");
                        self.to_close.push(id);
                        continue;
                    }
                }
            }
            if conn.out.is_empty() {
                self.on_drained(id);
            }
        }
        list.clear();
        if self.flush_list.is_empty() {
            self.flush_list = list;
        }
    }

    /// A connection's output is fully written: finish closing it if it was closing.
    fn on_drained(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match &mut conn.phase {
            Phase::Open => {}
            Phase::PeerClosed => self.to_close.push(id),
            Phase::Closing { linger, shut, .. } => {
                if !*linger {
                    self.to_close.push(id);
                } else if !*shut {
                    *shut = true;
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    // The peer's EOF may already be waiting; edge-triggered readiness
                    // would not tell us again.
                    self.discard_input(id);
                }
            }
        }
    }
}

/// `read`, retried on `EINTR`.
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
