//! Federation helpers: subscribers, waiting for links and interest to settle (bounded
//! polls of `STATS`: nothing announces them), and [`FakeLink`], a plain socket that
//! speaks the link frames by hand.

use serde_json::Value;

use super::{json_str, wait_until, Broker, Conn};

/// Waits until `node`'s link to `peer` is up and has learned at least `n` interest
/// entries from it.
pub fn wait_interest(node: &Broker, peer: &str, n: u64) {
    wait_until(&format!("{peer} -> interest >= {n}"), || {
        node.link(peer)
            .is_some_and(|l| l["interest_in"].as_u64().unwrap_or(0) >= n)
    });
}

/// Subscribes a fresh connection to `channel`.
pub fn subscriber(node: &Broker, channel: &str) -> Conn {
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

/// A hand-driven link: a plain socket that said `HELLO` with `link: true`.
pub struct FakeLink {
    /// The socket.
    pub conn: Conn,
}

impl FakeLink {
    /// Opens a link to `node` as broker `name`, presenting `token` if given.
    pub fn open(node: &Broker, name: &str, token: Option<&str>) -> FakeLink {
        let mut conn = node.connect();
        let token = token.map_or(String::new(), |t| format!(r#","token":{}"#, json_str(t)));
        conn.send(&format!(
            r#"{{"command":"HELLO","name":"{name}","echo":false,"link":true{token}}}"#
        ));
        conn.expect("WELCOME");
        FakeLink { conn }
    }

    /// Sends a `ROUTE`.
    pub fn route(&mut self, channel: &str, seq: u64, path: &str, message: &str) {
        self.conn.send(&format!(
            r#"{{"command":"ROUTE","channel":"{channel}","seq":{seq},"path":{path},"message":{message}}}"#
        ));
    }

    /// Sends an `INTEREST` in `channel` with `path` (a JSON array).
    pub fn interest(&mut self, channel: &str, path: &str) {
        self.conn.send(&format!(
            r#"{{"command":"INTEREST","channel":{},"path":{path}}}"#,
            json_str(channel)
        ));
    }

    /// PING, skipping the `INTEREST` frames the broker sends meanwhile: every frame
    /// sent before has been handled.
    pub fn sync(&mut self) {
        self.conn.send(r#"{"command":"PING"}"#);
        loop {
            let v = self.conn.recv();
            if v["command"] == "PONG" {
                return;
            }
            assert!(
                v["command"] == "INTEREST" || v["command"] == "NOINTEREST",
                "unexpected frame on a link: {v}"
            );
        }
    }

    /// PING, and every frame the broker sent on the link before the `PONG`.
    pub fn frames_until_pong(&mut self) -> Vec<Value> {
        self.conn.send(r#"{"command":"PING"}"#);
        let mut frames = Vec::new();
        loop {
            let v = self.conn.recv();
            if v["command"] == "PONG" {
                return frames;
            }
            frames.push(v);
        }
    }
}
