//! Making peer-supplied text safe to log, and keeping noisy warnings rare.
//!
//! Owns [`Escaped`], which shows text from the network (client names, channels, frames)
//! with control characters escaped and a length cap, so no peer can forge a log line or
//! flood a log with one field; and [`Throttle`], which lets a repeated warning through
//! at most once per interval and counts what it held back. It never decides what to
//! log.

use std::fmt;
use std::time::{Duration, Instant};

/// Longest text shown by [`Escaped`], in characters; the rest is summarised.
pub const LOG_TEXT_MAX: usize = 200;

/// Shows untrusted text in a log: control characters (newlines, escape sequences, ...)
/// as `\n`, `\u{1b}` and the like, and at most [`LOG_TEXT_MAX`] characters.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == LOG_TEXT_MAX {
                let rest = self.0.chars().count() - shown;
                return write!(f, "...({rest} more characters)");
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Escapes untrusted bytes (not necessarily UTF-8) for a log line.
pub fn escape_bytes(bytes: &[u8]) -> String {
    Escaped(&String::from_utf8_lossy(bytes)).to_string()
}

/// Lets an event be logged at most once per interval.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// A throttle letting one event through per `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// Whether to log an event happening at `now`: `Some(n)` with the number of events
    /// held back since the last one logged, or `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let shown = Escaped("evil\n2026-01-01 INFO forged\u{1b}[31m").to_string();
        assert!(!shown.contains('\n') && !shown.contains('\u{1b}'));
        assert!(shown.contains("\\n") && shown.contains("\\u{1b}"));
    }

    #[test]
    fn long_text_is_capped() {
        let shown = Escaped(&"x".repeat(5000)).to_string();
        assert!(shown.len() < LOG_TEXT_MAX + 40, "{}", shown.len());
        assert!(shown.ends_with("(4800 more characters)"));
    }

    #[test]
    fn throttle_counts_what_it_holds_back() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.allow(t0 + Duration::from_millis(20)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(2)), Some(2));
    }
}
