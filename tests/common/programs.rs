//! Programs under test (`client`, `publisher`, `chat`, and the broker run to completion
//! for its start-up errors): output read line by line on background threads, so tests
//! synchronise only on what a process prints (`subscribed to news`, a chat line).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use super::{wait_exit, Broker, CHAT, CLIENT, TIMEOUT};

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

    /// The next line, `None` at end of stream. Panics after [`TIMEOUT`].
    pub fn next_line(&mut self) -> Option<String> {
        if self.eof {
            return None;
        }
        match self.rx.recv_timeout(TIMEOUT) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line within {TIMEOUT:?}; seen so far: {:#?}", self.seen)
            }
        }
    }

    /// Skips lines until one matches; panics at end of stream or after [`TIMEOUT`].
    pub fn wait_for(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
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
                    panic!("line not seen within {TIMEOUT:?}; seen: {:#?}", self.seen)
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
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Its stdout.
    pub stdout: Lines,
    /// Its stderr.
    pub stderr: Lines,
}

impl Program {
    /// Starts `exe` with `args`.
    pub fn spawn(exe: &str, args: &[&str]) -> Program {
        Program::spawn_env(exe, args, &[])
    }

    /// Starts `exe` with `args` and extra environment variables.
    pub fn spawn_env(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Program {
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {exe}: {e}"));
        let stdout = Lines::spawn(child.stdout.take().expect("stdout"));
        let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
        Program {
            stdin: child.stdin.take(),
            child: Some(child),
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

    /// Waits for it to exit; panics after [`TIMEOUT`].
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.take().expect("program already waited for");
        let (out, err) = (&self.stdout.seen, &self.stderr.seen);
        wait_exit(child, "the program", || {
            format!("stdout: {out:#?}; stderr: {err:#?}")
        })
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a program to completion with empty stdin: (status, stdout lines, stderr lines).
pub fn run(exe: &str, args: &[&str]) -> (ExitStatus, Vec<String>, Vec<String>) {
    run_env(exe, args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_env(
    exe: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut program = Program::spawn_env(exe, args, env);
    program.close_stdin();
    let stdout = program.stdout.rest();
    let stderr = program.stderr.rest();
    let status = program.wait();
    (status, stdout, stderr)
}

/// Starts `client sub` on `channels` with `extra` flags and waits until the broker has
/// confirmed every subscription.
pub fn client_sub(broker: &Broker, channels: &[&str], extra: &[&str]) -> Program {
    let addr = broker.addr();
    let mut args = vec!["--addr", addr.as_str(), "sub"];
    args.extend_from_slice(channels);
    args.extend_from_slice(extra);
    let mut sub = Program::spawn(CLIENT, &args);
    for channel in channels {
        let want = format!("subscribed to {channel}");
        sub.stderr.wait_for(|l| l == want);
    }
    sub
}

/// Runs `client pub CHANNEL MESSAGE` and returns its one line of output.
pub fn client_pub(broker: &Broker, channel: &str, message: &str) -> String {
    let (status, out, err) = run(CLIENT, &["--addr", &broker.addr(), "pub", channel, message]);
    assert!(status.success(), "client pub failed: {err:?}");
    assert_eq!(out.len(), 1, "{out:?}");
    out[0].clone()
}

/// Starts `chat` and waits until it has joined every room.
pub fn chat(broker: &Broker, name: &str, rooms: &[&str]) -> Program {
    let addr = broker.addr();
    let mut args = vec!["--addr", addr.as_str(), "--name", name];
    for room in rooms {
        args.extend_from_slice(&["--room", room]);
    }
    let mut program = Program::spawn(CHAT, &args);
    for room in rooms {
        let want = format!("* joined {room}");
        program.stderr.wait_for(|l| l == want);
    }
    program
}
