//! [`Broker`]: a real `broker` process for a test, killed when dropped.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use serde_json::Value;

use super::{json_str, wait_exit, wait_until, Conn, BROKER, TIMEOUT};

/// What happens to a broker's stderr (its log).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Log {
    /// Dropped (shown with `BROKER_TEST_LOG=1`).
    Discard,
    /// Kept for [`Broker::log`] and [`Broker::wait_log`] (and shown with
    /// `BROKER_TEST_LOG=1`).
    Keep,
    /// Left to the test as a pipe ([`Broker::take_stderr`]).
    Pipe,
}

/// How to start a broker: `Broker::builder().name("hub").args(&[..]).start()`.
pub struct Builder {
    program: Option<String>,
    wrapper: Vec<String>,
    listen: String,
    name: Option<String>,
    args: Vec<String>,
    log: Log,
}

impl Builder {
    /// Runs another broker binary than this build's (to check an older build).
    pub fn program(mut self, program: Option<String>) -> Builder {
        self.program = program;
        self
    }

    /// Runs the broker under a wrapper command (for example `prlimit --nofile=64:64 --`).
    pub fn wrapper(mut self, wrapper: &[&str]) -> Builder {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Listens on `addr` instead of a free port.
    pub fn listen(mut self, addr: &str) -> Builder {
        self.listen = addr.to_string();
        self
    }

    /// `--name NAME`; the log is kept too (federation tests read it).
    pub fn name(mut self, name: &str) -> Builder {
        self.name = Some(name.to_string());
        self.log = Log::Keep;
        self
    }

    /// More flags.
    pub fn args(mut self, args: &[&str]) -> Builder {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Keeps the log for [`Broker::log`] and [`Broker::wait_log`].
    pub fn keep_log(mut self) -> Builder {
        self.log = Log::Keep;
        self
    }

    /// Leaves stderr as a pipe for the test to take with [`Broker::take_stderr`].
    pub fn pipe_stderr(mut self) -> Builder {
        self.log = Log::Pipe;
        self
    }

    /// Starts it and waits for its `listening on ADDR` line.
    pub fn start(self) -> Broker {
        let broker = self.program.as_deref().unwrap_or(BROKER);
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(broker);
                c
            }
            None => Command::new(broker),
        };
        command.args(["--listen", &self.listen]);
        if let Some(name) = &self.name {
            command.args(["--name", name]);
        }
        let show = std::env::var_os("BROKER_TEST_LOG").is_some();
        let stderr = match self.log {
            Log::Discard if show => Stdio::inherit(),
            Log::Discard => Stdio::null(),
            Log::Keep | Log::Pipe => Stdio::piped(),
        };
        let mut child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot start the broker binary");
        let log = Arc::new(Mutex::new(String::new()));
        if self.log == Log::Keep {
            let stderr = child.stderr.take().expect("piped");
            let sink = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if show {
                        eprintln!("{line}");
                    }
                    let mut log = sink.lock().expect("log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = read_announcement(&mut child);
        let token = self
            .args
            .windows(2)
            .find(|w| w[0] == "--token")
            .map(|w| w[1].clone());
        Broker {
            pid: child.id(),
            child: Some(child),
            addr,
            log,
            token,
        }
    }
}

/// A running broker process, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pid: u32,
    addr: String,
    log: Arc<Mutex<String>>,
    /// The `--token` it was started with: [`Broker::stats`] presents it.
    token: Option<String>,
}

impl Broker {
    /// A builder: free loopback port, no flags, log discarded.
    pub fn builder() -> Builder {
        Builder {
            program: None,
            wrapper: Vec::new(),
            listen: "127.0.0.1:0".to_string(),
            name: None,
            args: Vec::new(),
            log: Log::Discard,
        }
    }

    /// Starts `broker --listen 127.0.0.1:0 ARGS...`.
    pub fn start(args: &[&str]) -> Broker {
        Broker::builder().args(args).start()
    }

    /// Starts `broker --listen 127.0.0.1:0 --name NAME ARGS...`, keeping its log.
    pub fn named(name: &str, args: &[&str]) -> Broker {
        Broker::builder().name(name).args(args).start()
    }

    /// Starts `broker --listen LISTEN --name NAME ARGS...`, keeping its log.
    pub fn named_on(name: &str, listen: &str, args: &[&str]) -> Broker {
        Broker::builder()
            .name(name)
            .listen(listen)
            .args(args)
            .start()
    }

    /// The address it listens on, from its `listening on ADDR` line.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Opens a new raw connection to it.
    pub fn connect(&self) -> Conn {
        Conn::connect(&self.addr)
    }

    /// A new raw connection that has said `HELLO` with the broker's token, if it has
    /// one (a plain connection otherwise).
    pub fn connect_authenticated(&self) -> Conn {
        let mut c = self.connect();
        if let Some(token) = &self.token {
            c.hello(&format!(r#","token":{}"#, json_str(token)));
        }
        c
    }

    /// Its `STATS` reply, on a fresh connection (after `HELLO` with its token, if any).
    /// The fresh connection is itself counted in the connection counters.
    pub fn stats(&self) -> Value {
        self.connect_authenticated()
            .request(r#"{"command":"STATS"}"#)
    }

    /// The `STATS` entry of its link to `peer`, if that link is up.
    pub fn link(&self, peer: &str) -> Option<Value> {
        self.stats()["links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["peer"] == peer).cloned())
    }

    /// The log so far (empty unless it was kept).
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the kept log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_until(&format!("log line {needle:?}"), || {
            self.log.lock().expect("log lock").contains(needle)
        });
    }

    /// Its stderr, when started with [`Builder::pipe_stderr`].
    pub fn take_stderr(&mut self) -> ChildStderr {
        self.child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("stderr is piped and not taken yet")
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .expect("broker already waited for")
            .try_wait()
            .expect("try_wait")
    }

    /// The broker's resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("cannot read the broker's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("no VmRSS line in /proc status")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (as `kill -NAME` spells it: `TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -{name} {} failed", self.pid);
    }

    /// Stops it with SIGSTOP, as a hung peer: its sockets stay open and the kernel
    /// still accepts connections and data for it, but it handles nothing. It is resumed
    /// (SIGCONT) when the returned guard is dropped or [`Frozen::thaw`]ed, so a failing
    /// test never leaves it stopped (and dropping the broker kills it either way).
    pub fn freeze(&self) -> Frozen<'_> {
        self.signal("STOP");
        Frozen { broker: self }
    }

    /// Waits (bounded by [`TIMEOUT`]) for it to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.take().expect("broker already waited for");
        wait_exit(child, "the broker", String::new)
    }

    /// Stops it now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A broker stopped by [`Broker::freeze`]; resumed when dropped.
pub struct Frozen<'a> {
    broker: &'a Broker,
}

impl Frozen<'_> {
    /// Resumes it (SIGCONT).
    pub fn thaw(self) {
        // Dropping sends SIGCONT.
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // Not `signal`: this may run while a failed test unwinds, and must not panic.
        let _ = Command::new("kill")
            .args(["-CONT", &self.broker.pid.to_string()])
            .status();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a started broker's `listening on ADDR` line (stdout must be piped) and
/// returns the address; stdout is drained afterwards so the broker never blocks on it.
fn read_announcement(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("broker stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = rx
        .recv_timeout(TIMEOUT)
        .expect("broker did not print `listening on ADDR`");
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line from broker: {line:?}"));
    addr.parse::<std::net::SocketAddr>()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
        .to_string()
}
