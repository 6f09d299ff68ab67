//! Why the broker closes a connection.
//!
//! Owns [`CloseReason`], the one vocabulary for ending a connection, whatever its wire
//! protocol: each codec maps a reason to its own goodbye (protocol v1: an `ERROR`
//! frame; a protocol without one: silence). It holds no wire strings of any codec.

use std::fmt;

/// Why the broker is closing a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A frame longer than the connection's limit.
    FrameTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The first frame was not `HELLO` with the right credential.
    NotAuthenticated,
    /// `HELLO` carried a wrong or missing credential.
    BadCredential,
    /// Unsent output passed `--max-pending`.
    SlowConsumer {
        /// The limit, in bytes.
        max_pending: usize,
    },
    /// Over `--max-connections`.
    ConnectionLimit,
    /// Did not authenticate within `--auth-timeout`.
    AuthTimeout {
        /// The timeout.
        after: std::time::Duration,
    },
    /// An unfinished frame made no progress for `--frame-timeout`.
    Stale {
        /// The timeout.
        after: std::time::Duration,
    },
    /// Pending output, and no byte accepted by the socket for `--write-deadline`.
    WriteStalled {
        /// The deadline.
        after: std::time::Duration,
    },
    /// Over `--max-memory`, and this connection held the most queued output.
    MemoryOutput,
    /// Over `--max-memory`, and this connection held the largest unfinished frame.
    MemoryInput,
    /// A federation link was refused (a link to itself, a duplicate name, ...).
    LinkRefused(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::FrameTooLarge { limit } => write!(f, "frame exceeds {limit} bytes"),
            CloseReason::NotAuthenticated => {
                f.write_str("the first frame must be HELLO with a valid token")
            }
            CloseReason::BadCredential => f.write_str("invalid or missing token"),
            CloseReason::SlowConsumer { max_pending } => {
                write!(f, "unsent output exceeded {max_pending} bytes")
            }
            CloseReason::ConnectionLimit => f.write_str("too many connections"),
            CloseReason::AuthTimeout { after } => {
                write!(f, "not authenticated within {}", secs(*after))
            }
            CloseReason::Stale { after } => {
                write!(f, "an unfinished frame made no progress for {}", secs(*after))
            }
            CloseReason::WriteStalled { after } => {
                write!(f, "no output accepted for {}", secs(*after))
            }
            CloseReason::MemoryOutput => f.write_str(
                "the broker is over its memory limit and this connection held the most unsent output",
            ),
            CloseReason::MemoryInput => f.write_str(
                "the broker is over its memory limit and this connection held the largest unfinished frame",
            ),
            CloseReason::LinkRefused(why) => f.write_str(why),
        }
    }
}

/// A duration as seconds for humans: `5 s`, `2.5 s`.
fn secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
