//! Queueing one published message to 1,000 subscribers through the broker's real
//! fan-out (`pubsub::core::fan_out`): router lookup, per-receiver checks, encoding the
//! MESSAGE once, pushing it into every subscriber's write queue; then (not timed
//! separately) flushing each queue into a writer that accepts everything, so the
//! per-delivery cost of the broker's own work is visible without the kernel's.
//!
//! The subscribers are real connections (loopback sockets that are never written to).
//! Throughput is in elements = deliveries, so criterion's "elem/s" is deliveries per
//! second and time / 1,000 is the cost of one delivery. Payloads: 16 B (copied into
//! pooled chunks) and 1 KiB (at the share threshold: one `Rc` per queue).

use std::hint::black_box;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pubsub::codec::Wire;
use pubsub::connection::{Connection, Conns, Stage};
use pubsub::core::{fan_out, Core, Msg, Origin, Payload, Settings, Turn};
use pubsub::net::Transport;

/// Subscribers of the channel.
const SUBSCRIBERS: usize = 1000;

/// The reactor's per-connection write budget per flush (1 MiB).
const WRITE_BUDGET: usize = 1024 * 1024;

/// The channel published to.
const CHANNEL: &str = "bench.fanout";

/// A broker core with 1,000 subscribed connections and one publisher.
struct Bench {
    core: Core,
    conns: Conns,
    turn: Turn,
    publisher: pubsub::ids::ConnKey,
    /// The far ends of the sockets, kept open.
    _peers: Vec<TcpStream>,
}

fn settings() -> Settings {
    Settings::defaults("bench")
}

impl Bench {
    fn new() -> Bench {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut core = Core::new(settings());
        let mut conns = Conns::new();
        let mut turn = Turn::new(Instant::now());
        let mut peers = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..=SUBSCRIBERS {
            peers.push(TcpStream::connect(addr).expect("connect"));
            let (stream, peer) = listener.accept().expect("accept");
            stream.set_nonblocking(true).expect("nonblocking");
            let key = conns.vacant_key();
            let id = core.next_client_id();
            let conn = Connection::new(
                key,
                Transport::Tcp(mio::net::TcpStream::from_std(stream)),
                peer,
                id,
                Stage::Open,
                Wire::Json,
                Instant::now(),
            );
            keys.push(conns.insert(conn));
        }
        let publisher = keys.pop().expect("a publisher");
        for key in keys {
            core.subscribe(&mut conns, &mut turn, key, CHANNEL)
                .expect("subscribe");
        }
        Bench {
            core,
            conns,
            turn,
            publisher,
            _peers: peers,
        }
    }

    /// One PUBLISH through the real fan-out. Returns deliveries.
    fn publish(&mut self, message: &str) -> usize {
        let msg = Msg {
            channel: CHANNEL,
            payload: Payload::json(message),
            origin: Origin::Client(self.publisher),
        };
        fan_out(&mut self.core, &mut self.conns, &mut self.turn, &msg)
    }

    /// End of the loop turn: flush every queue with output into `io::sink()`.
    fn flush(&mut self) -> usize {
        let mut sink = io::sink();
        let mut written = 0;
        let list = self.turn.take_flush();
        for &key in &list {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.unmark_flush();
            match conn
                .out()
                .write_to(&mut self.core.pool, &mut sink, WRITE_BUDGET)
            {
                Ok(f) => written += f.written,
                Err(e) => panic!("sink cannot fail: {e}"),
            }
        }
        self.turn.return_flush(list);
        written
    }
}

/// A JSON string message whose text is `len` bytes, quotes included.
fn message(len: usize) -> String {
    format!("\"{}\"", "x".repeat(len - 2))
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_1000");
    for (name, len) in [("16B", 16), ("1KiB", 1024)] {
        let msg = message(len);
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));

        // Steady state when subscribers keep up: one publish per turn, then every
        // queue is flushed (and gives its memory back).
        let mut br = Bench::new();
        g.bench_function(format!("push_drain/{name}"), |b| {
            b.iter(|| {
                let n = br.publish(black_box(&msg));
                br.flush();
                n
            })
        });

        // A busy turn: 16 publishes queue up before the flush, so allocation and the
        // writev are paid once per 16 deliveries to a subscriber.
        g.throughput(Throughput::Elements(16 * SUBSCRIBERS as u64));
        g.bench_function(format!("burst16_push_drain/{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for _ in 0..16 {
                    n += br.publish(black_box(&msg));
                }
                br.flush();
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
