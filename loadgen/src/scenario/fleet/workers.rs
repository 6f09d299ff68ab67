//! The parent's side of its worker processes: spawning them (copies of this executable
//! with the hidden `--fleet-worker` flag), reading their report lines, asking them for
//! counts, and stopping them. Owns the child processes: every worker it spawned is
//! stopped when it is dropped (stdin closed, then SIGKILL by PID after a deadline), so
//! no error path leaves a worker holding sockets. It never opens a client connection.

use super::holder::Share;
use super::wire::{Command, Report};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long the workers may take to close their connections and exit once told to.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
/// How long workers get to exit after their stdin closes on an error path, before
/// they are killed (one may be busy connecting and not reading its stdin).
const DROP_GRACE: Duration = Duration::from_secs(2);
/// Longest single wait for a line, so callers can sample while they wait.
const TICK: Duration = Duration::from_millis(100);

/// What went wrong with a worker process.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// It could not be started.
    #[error("starting worker process {index}: {source}")]
    Spawn {
        /// Which worker.
        index: usize,
        /// The OS error.
        source: io::Error,
    },
    /// It closed its stdout (exited) or its stdin before answering.
    #[error("worker process {index} exited or stopped answering ({detail}); see its stderr")]
    Gone {
        /// Which worker.
        index: usize,
        /// What was seen.
        detail: String,
    },
    /// It wrote a line that is not a report.
    #[error("worker process {index} wrote {line:?}, not a report")]
    Garbled {
        /// Which worker.
        index: usize,
        /// The line.
        line: String,
    },
    /// Not every worker answered in time.
    #[error("{missing} of {total} worker processes did not {what} within {secs:.0} s")]
    Deadline {
        /// What they were waiting for.
        what: &'static str,
        /// How many did not answer.
        missing: usize,
        /// Workers asked.
        total: usize,
        /// Seconds waited.
        secs: f64,
    },
}

/// A line from worker `index`'s stdout, or its end.
enum Line {
    Report(Report),
    Garbled(String),
    Closed,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    share: Share,
}

/// The running worker processes.
pub struct Workers {
    workers: Vec<Worker>,
    lines: Receiver<(usize, Line)>,
    /// Per worker: its stdout has closed (it exited).
    closed: Vec<bool>,
}

impl Workers {
    /// Starts one worker per share: `exe fleet --fleet-worker START:COUNT` followed by
    /// `common_args`. Their stderr is this process's stderr.
    pub fn spawn(
        exe: &std::path::Path,
        common_args: &[String],
        shares: &[Share],
    ) -> Result<Workers, WorkerError> {
        let (tx, lines) = mpsc::channel();
        let mut workers = Workers {
            workers: Vec::new(),
            lines,
            closed: vec![false; shares.len()],
        };
        for (index, share) in shares.iter().enumerate() {
            let mut child = Process::new(exe)
                .arg("fleet")
                .arg("--fleet-worker")
                .arg(share.flag())
                .args(common_args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| WorkerError::Spawn { index, source })?;
            let stdout = child.stdout.take();
            let stdin = child.stdin.take();
            // Pushed before anything can fail, so Drop stops it.
            workers.workers.push(Worker {
                child,
                stdin,
                share: *share,
            });
            let Some(stdout) = stdout else {
                return Err(WorkerError::Gone {
                    index,
                    detail: "no stdout pipe".into(),
                });
            };
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("fleet-worker-{index}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let parsed = match Report::parse(&line) {
                            Ok(report) => Line::Report(report),
                            Err(_) => Line::Garbled(line),
                        };
                        if tx.send((index, parsed)).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send((index, Line::Closed));
                })
                .map_err(|source| WorkerError::Spawn { index, source })?;
        }
        Ok(workers)
    }

    /// The share of worker `index`.
    pub fn share(&self, index: usize) -> Share {
        self.workers[index].share
    }

    /// PIDs of the workers, in order.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// Waits until every worker has sent one report that `pick` accepts (returns
    /// `Some`), calling `tick` about every 100 ms meanwhile; results in worker order.
    /// A report `pick` refuses, a garbled line, or the stdout of a worker that has not
    /// answered yet closing is an error. (A worker that answered with its last report
    /// may close its stdout while the others are still answering.)
    pub fn collect<T>(
        &mut self,
        what: &'static str,
        within: Duration,
        mut pick: impl FnMut(usize, Report) -> Option<T>,
        mut tick: impl FnMut(),
    ) -> Result<Vec<T>, WorkerError> {
        let total = self.workers.len();
        let started = Instant::now();
        let deadline = started + within;
        let mut got: HashMap<usize, T> = HashMap::new();
        if let Some(index) = self.closed.iter().position(|&c| c) {
            return Err(WorkerError::Gone {
                index,
                detail: format!("it had exited before being asked to {what}"),
            });
        }
        while got.len() < total {
            let now = Instant::now();
            if now >= deadline {
                return Err(WorkerError::Deadline {
                    what,
                    missing: total - got.len(),
                    total,
                    secs: started.elapsed().as_secs_f64(),
                });
            }
            match self.lines.recv_timeout(TICK.min(deadline - now)) {
                Ok((index, Line::Report(report))) => {
                    let detail = format!("{report:?}");
                    match pick(index, report) {
                        Some(value) => {
                            got.insert(index, value);
                        }
                        None => {
                            return Err(WorkerError::Garbled {
                                index,
                                line: detail,
                            })
                        }
                    }
                }
                Ok((index, Line::Garbled(line))) => {
                    return Err(WorkerError::Garbled { index, line })
                }
                Ok((index, Line::Closed)) => {
                    if let Some(c) = self.closed.get_mut(index) {
                        *c = true;
                    }
                    if !got.contains_key(&index) {
                        return Err(WorkerError::Gone {
                            index,
                            detail: format!("stdout closed while waiting to {what}"),
                        });
                    }
                }
                Err(RecvTimeoutError::Timeout) => tick(),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(WorkerError::Gone {
                        index: 0,
                        detail: "every stdout reader ended".into(),
                    })
                }
            }
        }
        let mut out = Vec::with_capacity(total);
        for index in 0..total {
            if let Some(value) = got.remove(&index) {
                out.push(value);
            }
        }
        Ok(out)
    }

    /// Sends `command` to every worker.
    pub fn tell(&mut self, command: Command) -> Result<(), WorkerError> {
        for (index, w) in self.workers.iter_mut().enumerate() {
            let gone = |e: io::Error| WorkerError::Gone {
                index,
                detail: format!("writing to its stdin: {e}"),
            };
            let stdin = w.stdin.as_mut().ok_or_else(|| WorkerError::Gone {
                index,
                detail: "stdin already closed".into(),
            })?;
            stdin
                .write_all(command.as_line().as_bytes())
                .and_then(|()| stdin.flush())
                .map_err(gone)?;
        }
        Ok(())
    }

    /// Tells every worker to exit and collects their last reports.
    pub fn finish(mut self) -> Result<Vec<Report>, WorkerError> {
        self.tell(Command::Exit)?;
        let done = self.collect(
            "close their connections and exit",
            EXIT_DEADLINE,
            |_, r| matches!(r, Report::Done { .. }).then_some(r),
            || {},
        )?;
        self.stop(EXIT_DEADLINE);
        Ok(done)
    }

    /// Closes every worker's stdin, waits for them to exit (at most `grace` in all),
    /// then kills those still running (by their PID, through `Child`), and reaps them.
    fn stop(&mut self, grace: Duration) {
        for w in &mut self.workers {
            w.stdin = None;
        }
        let deadline = Instant::now() + grace;
        for w in &mut self.workers {
            loop {
                match w.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!(
                            "loadgen fleet: worker pid {} did not exit; killing it",
                            w.child.id()
                        );
                        let _ = w.child.kill();
                        let _ = w.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        self.workers.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop(DROP_GRACE);
    }
}
