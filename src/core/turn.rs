//! One loop turn's work lists and clock.
//!
//! Owns what a turn accumulates: connections with output to flush at its end, with
//! input left to read next turn, and to remove at its end, plus the turn's `now` (read
//! once per turn, so nothing below asks the clock per frame and timer logic can be
//! tested with made-up instants) and the shared read buffer. It never performs the
//! work it lists.

use std::time::Instant;

use crate::connection::Connection;
use crate::ids::ConnKey;

/// Bytes read from one socket per `read` call, and the size of the shared read buffer.
pub const READ_CHUNK: usize = 64 * 1024;

/// The work lists of a loop turn. See the module documentation.
pub struct Turn {
    /// The time the turn started.
    pub now: Instant,
    flush: Vec<ConnKey>,
    read: Vec<ConnKey>,
    close: Vec<ConnKey>,
    /// Shared read buffer: a read lands here first, and only an incomplete trailing
    /// frame is copied into the connection.
    pub rbuf: Box<[u8]>,
    /// Upstreams (by index) whose link came up this turn.
    pub links_up: Vec<usize>,
    /// Where the payloads of the run of publishes being gathered lie in the read being
    /// handled (see `codec::run`); empty between reads, kept for its allocation.
    pub run: Vec<(usize, usize)>,
}

impl Turn {
    /// Empty lists, starting at `now`.
    pub fn new(now: Instant) -> Turn {
        Turn {
            now,
            flush: Vec::new(),
            read: Vec::new(),
            close: Vec::new(),
            rbuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            links_up: Vec::new(),
            run: Vec::new(),
        }
    }

    /// Puts `conn` on this turn's flush list (once).
    #[inline]
    pub fn mark_flush(&mut self, conn: &mut Connection) {
        if conn.mark_flush() {
            self.flush.push(conn.key());
        }
    }

    /// Puts `conn` on the list to read again next turn (once).
    #[inline]
    pub fn mark_read(&mut self, conn: &mut Connection) {
        if conn.mark_read() {
            self.read.push(conn.key());
        }
    }

    /// Removes `key` at the end of the turn.
    #[inline]
    pub fn close_later(&mut self, key: ConnKey) {
        self.close.push(key);
    }

    /// Whether work is queued for the next turn (then the loop must not sleep).
    pub fn has_work(&self) -> bool {
        !self.flush.is_empty() || !self.read.is_empty()
    }

    /// Takes the flush list (give it back with [`Turn::return_flush`]).
    pub fn take_flush(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.flush)
    }

    /// Gives back an emptied list's buffer, unless new work arrived meanwhile.
    pub fn return_flush(&mut self, mut list: Vec<ConnKey>) {
        list.clear();
        if self.flush.is_empty() {
            self.flush = list;
        }
    }

    /// Takes the deferred-read list.
    pub fn take_reads(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.read)
    }

    /// Takes the close list.
    pub fn take_closes(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.close)
    }
}
