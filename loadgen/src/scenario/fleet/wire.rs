//! The line protocol between `fleet`'s parent and its worker processes: one JSON
//! [`Report`] per line on the worker's stdout, one [`Command`] word per line on its
//! stdin. Owns the message shapes only; it never spawns, reads or writes a process.

use serde::{Deserialize, Serialize};

/// What a worker process tells its parent, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// Every connection of the worker's share is confirmed, failed or skipped.
    Ready {
        /// Connections confirmed.
        ready: usize,
        /// Connections that failed.
        failed: usize,
        /// Seconds from its first connect to its last confirmation.
        secs: f64,
        /// Global indices of the share's connections that are not held.
        not_held: Vec<usize>,
        /// The first failures, as text.
        failures: Vec<String>,
    },
    /// The answer to [`Command::Counts`].
    Counts {
        /// Connections confirmed and still open.
        held: usize,
        /// Messages of any kind its subscribers received so far.
        received: u64,
        /// (global index, count) of every connection that received interest probes.
        probed: Vec<(usize, u32)>,
        /// (global index, count) of every connection that received reachability checks.
        checked: Vec<(usize, u32)>,
    },
    /// The worker closed its connections and is about to exit.
    Done {
        /// Errors after setup (server errors, connections closed by the broker).
        errors: u64,
        /// Messages that were neither probes, checks nor loadgen stamps.
        foreign: u64,
        /// The first error texts.
        error_samples: Vec<String>,
    },
}

impl Report {
    /// The report as one line, newline included.
    pub fn to_line(&self) -> String {
        // A report holds only numbers and strings: serialising cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Parses one line a worker wrote.
    pub fn parse(line: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// What the parent tells a worker process, one word per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Answer with [`Report::Counts`].
    Counts,
    /// Close every connection, answer with [`Report::Done`] and exit.
    Exit,
}

impl Command {
    /// The command as one line, newline included.
    pub fn as_line(self) -> &'static str {
        match self {
            Command::Counts => "counts\n",
            Command::Exit => "exit\n",
        }
    }

    /// Parses one line the parent wrote; `None` for anything else.
    pub fn parse(line: &str) -> Option<Command> {
        match line.trim() {
            "counts" => Some(Command::Counts),
            "exit" => Some(Command::Exit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_as_single_lines() {
        let reports = [
            Report::Ready {
                ready: 3,
                failed: 1,
                secs: 0.25,
                not_held: vec![7],
                failures: vec!["connection refused: connect: refused".into()],
            },
            Report::Counts {
                held: 3,
                received: 2,
                probed: vec![(5, 1)],
                checked: vec![(5, 1)],
            },
            Report::Done {
                errors: 0,
                foreign: 0,
                error_samples: Vec::new(),
            },
        ];
        for report in reports {
            let line = report.to_line();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'));
            assert_eq!(Report::parse(&line).ok(), Some(report));
        }
        assert!(Report::parse("not json").is_err());
    }

    #[test]
    fn commands_round_trip() {
        for c in [Command::Counts, Command::Exit] {
            assert_eq!(Command::parse(c.as_line()), Some(c));
        }
        assert_eq!(Command::parse("reboot\n"), None);
    }
}
