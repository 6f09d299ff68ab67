//! What the benchmarks share: a broker core with real loopback connections, driven
//! without an event loop.
//!
//! Owns building a `Core` with `n` open protocol-v1 connections (real sockets, whose
//! far ends are kept open but never read) and ending a turn by writing every queue with
//! output into a sink, so the broker's own per-message work is measured without the
//! kernel's. It never measures anything itself.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use pubsub::codec::Wire;
use pubsub::connection::{Connection, Conns, Stage};
use pubsub::core::{Core, Settings, Turn};
use pubsub::ids::ConnKey;
use pubsub::net::Transport;

/// A core with open connections and the turn they are served in.
pub struct Loopback {
    /// Broker state.
    pub core: Core,
    /// The connections.
    pub conns: Conns,
    /// The current turn.
    pub turn: Turn,
    /// The connections' keys, in the order they were opened.
    pub keys: Vec<ConnKey>,
    /// The far ends of the sockets, kept open.
    _peers: Vec<TcpStream>,
}

impl Loopback {
    /// A core (the command line's defaults) with `n` open JSON connections.
    pub fn new(n: usize) -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut core = Core::new(Settings::defaults("bench"));
        let mut conns = Conns::new();
        let mut peers = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            peers.push(TcpStream::connect(addr).expect("connect"));
            let (stream, peer) = listener.accept().expect("accept");
            stream.set_nonblocking(true).expect("nonblocking");
            let id = core.next_client_id();
            let conn = Connection::new(
                conns.vacant_key(),
                Transport::Tcp(mio::net::TcpStream::from_std(stream)),
                peer,
                id,
                Stage::Open,
                Wire::Json,
            );
            keys.push(conns.insert(conn));
        }
        Loopback {
            core,
            conns,
            turn: Turn::new(Instant::now()),
            keys,
            _peers: peers,
        }
    }

    /// Subscribes connection `key` to `channel`.
    pub fn subscribe(&mut self, key: ConnKey, channel: &str) {
        self.core
            .subscribe(&mut self.conns, &mut self.turn, key, channel)
            .expect("subscribe");
    }

    /// The end of a loop turn: every queue with output is written (up to `budget` bytes
    /// each) into a sink that takes everything. Returns the bytes written.
    pub fn end_turn(&mut self, budget: usize) -> usize {
        let mut sink = io::sink();
        let mut written = 0;
        let list = self.turn.take_flush();
        for &key in &list {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.unmark_flush();
            match conn.out().write_to(&mut self.core.pool, &mut sink, budget) {
                Ok(f) => written += f.written,
                Err(e) => panic!("a sink cannot fail: {e}"),
            }
        }
        self.turn.return_flush(list);
        written
    }
}
