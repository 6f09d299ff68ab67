//! Harness for `tests/programs.rs` and `tests/client_lib.rs`: starts the real `broker`
//! binary on a free loopback port and runs programs whose output is read line by line on
//! background threads.
//!
//! Tests synchronise only on what processes print (`listening on ADDR`, `subscribed to
//! news`, a chat line). [`WAIT`] is a failure guard, never a pacing device: when it
//! expires the test fails and shows everything the process printed so far.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expected event may take before the test fails. Generous: CI
/// machines are slow and several test binaries run at once.
pub const WAIT: Duration = Duration::from_secs(30);

/// A broker process on `127.0.0.1:<free port>`, killed when dropped.
pub struct Broker {
    child: Child,
    /// The address it listens on, from its `listening on ADDR` line.
    pub addr: String,
}

impl Broker {
    /// Starts a broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with extra flags (`--token`, `--max-frame`, ...).
    pub fn start_with(args: &[&str]) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start broker");
        let stdout = child.stdout.take().expect("broker stdout");
        let mut lines = Lines::spawn(stdout);
        let line = lines.wait_for(|l| l.starts_with("listening on "));
        let addr = line["listening on ".len()..].trim().to_string();
        // `lines` keeps draining stdout on its thread until the broker exits.
        Broker { child, addr }
    }

    /// Stops the broker now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address where nothing listens: bound, then released.
pub fn unused_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}

/// The lines of one output stream, read on a background thread.
pub struct Lines {
    rx: Receiver<String>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<String>,
    eof: bool,
}

impl Lines {
    fn spawn(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            eof: false,
        }
    }

    /// The next line, `None` at end of stream. Panics after [`WAIT`].
    pub fn next_line(&mut self) -> Option<String> {
        if self.eof {
            return None;
        }
        match self.rx.recv_timeout(WAIT) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line within {WAIT:?}; seen so far: {:#?}", self.seen)
            }
        }
    }

    /// Skips lines until one matches; panics at end of stream or after [`WAIT`].
    pub fn wait_for(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.eof = true;
                    panic!("stream ended before the line; seen: {:#?}", self.seen)
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("line not seen within {WAIT:?}; seen: {:#?}", self.seen)
                }
            }
        }
    }

    /// Every remaining line until end of stream (call once the process is exiting).
    pub fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.next_line() {
            out.push(line);
        }
        out
    }
}

/// A running program with piped stdin, stdout and stderr; killed when dropped.
pub struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout.
    pub stdout: Lines,
    /// Its stderr.
    pub stderr: Lines,
}

impl Program {
    /// Starts `exe` with `args`.
    pub fn spawn(exe: &str, args: &[&str]) -> Program {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {exe}: {e}"));
        let stdout = Lines::spawn(child.stdout.take().expect("stdout"));
        let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
        Program {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// Writes one line to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to program stdin");
        stdin.flush().expect("flush program stdin");
    }

    /// Closes its stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for it to exit; panics after [`WAIT`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "still running after {WAIT:?}; stdout: {:#?}; stderr: {:#?}",
                    self.stdout.seen, self.stderr.seen
                );
            }
            // Polling the exit status; the deadline above is the real bound.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a program to completion with empty stdin: (status, stdout lines, stderr lines).
pub fn run(exe: &str, args: &[&str]) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut program = Program::spawn(exe, args);
    program.close_stdin();
    let stdout = program.stdout.rest();
    let stderr = program.stderr.rest();
    let status = program.wait();
    (status, stdout, stderr)
}
