//! Federation test nodes: real `broker` processes with names, whose logs are kept, and
//! the waits that let a test observe links and interest settle (bounded polls of
//! `STATS` or the log; a deadline only fails the test).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Conn;

/// Longest wait for links or interest to settle.
pub const SETTLE: Duration = Duration::from_secs(15);

/// A broker process whose stderr (its log) is kept for assertions.
pub struct Node {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The `--token` it was started with: [`Node::stats`] presents it.
    token: Option<String>,
}

impl Node {
    /// Starts `broker --name NAME --listen LISTEN ARGS...`.
    pub fn start(name: &str, listen: &str, args: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(["--name", name, "--listen", listen, "--log-level", "info"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start broker");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("BROKER_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = super::read_announcement(&mut child);
        let token = args
            .windows(2)
            .find(|w| w[0] == "--token")
            .map(|w| w[1].to_string());
        Node {
            child,
            addr,
            log,
            token,
        }
    }

    /// Starts a broker on a free port.
    pub fn any_port(name: &str, args: &[&str]) -> Node {
        Node::start(name, "127.0.0.1:0", args)
    }

    /// The listen address as text.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// A new raw connection.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// The broker's `STATS` reply (after a `HELLO` with the node's token, if any).
    pub fn stats(&self) -> Value {
        let mut c = self.connect();
        if let Some(token) = &self.token {
            c.hello(&format!(r#","token":{}"#, super::json_str(token)));
        }
        c.request(r#"{"command":"STATS"}"#)
    }

    /// The `STATS` entry of the link to `peer`, if it is up.
    pub fn link(&self, peer: &str) -> Option<Value> {
        self.stats()["links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["peer"] == peer).cloned())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_until(&format!("log line {needle:?}"), || {
            self.log.lock().expect("log lock").contains(needle)
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds; fails the test after [`SETTLE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `node`'s link to `peer` is up and has learned at least `n` interest
/// entries from it.
pub fn wait_interest(node: &Node, peer: &str, n: u64) {
    wait_until(&format!("{peer} -> interest >= {n}"), || {
        node.link(peer)
            .is_some_and(|l| l["interest_in"].as_u64().unwrap_or(0) >= n)
    });
}

/// Subscribes a fresh connection to `channel`.
pub fn subscriber(node: &Node, channel: &str) -> Conn {
    let mut c = node.connect();
    c.subscribe(channel);
    c
}

/// Reads MESSAGE frames until one carries `"end"`; returns the payloads before it.
pub fn read_until_end(c: &mut Conn) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let v = c.expect("MESSAGE");
        let m = v["message"].to_string();
        if m == "\"end\"" {
            return got;
        }
        got.push(m);
    }
}

/// A free loopback port (bound, then released for the broker to take).
pub fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}
