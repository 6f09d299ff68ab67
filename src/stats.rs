//! Broker-wide counters.
//!
//! Owns plain counters that the reactor bumps as things happen, so what the broker did
//! can be observed (logs at shutdown, the `STATS` reply). Never used for decisions.

use crate::protocol::ErrorCode;

/// Counters since start. All monotonic.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections accepted (refused ones included).
    pub accepted: u64,
    /// Connections refused at the connection limit or on fd exhaustion.
    pub refused: u64,
    /// Connections closed.
    pub closed: u64,
    /// Frames received.
    pub frames_in: u64,
    /// `PUBLISH` commands handled.
    pub published: u64,
    /// MESSAGE frames queued to connections.
    pub delivered: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Connections closed because the broker was over `--max-memory`.
    pub memory_shed: u64,
    /// Connections closed for an unfinished frame that stalled (`--frame-timeout`).
    pub frame_timeouts: u64,
    /// Connections closed for not authenticating in time (`--auth-timeout`).
    pub auth_timeouts: u64,
    /// Connections closed for output the socket did not take (`--write-deadline`).
    pub write_stalls: u64,
    /// `ERROR` frames sent, by code (index of [`ErrorCode::ALL`]).
    pub errors: [u64; ErrorCode::ALL.len()],
}

impl Stats {
    /// Counts one `ERROR` frame.
    pub fn count_error(&mut self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|&c| c == code) {
            self.errors[i] += 1;
        }
    }

    /// How many `ERROR` frames of `code` were sent.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL
            .iter()
            .position(|&c| c == code)
            .map_or(0, |i| self.errors[i])
    }
}
