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

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pubsub::core::{fan_out, Msg, Origin, Payload};
use pubsub::ids::ConnKey;
use support::Loopback;

/// Subscribers of the channel.
const SUBSCRIBERS: usize = 1000;

/// The reactor's per-connection write budget per flush (1 MiB).
const WRITE_BUDGET: usize = 1024 * 1024;

/// The channel published to.
const CHANNEL: &str = "bench.fanout";

/// A broker core with 1,000 subscribed connections and one publisher.
struct Bench {
    lb: Loopback,
    publisher: ConnKey,
}

impl Bench {
    fn new() -> Bench {
        let mut lb = Loopback::new(SUBSCRIBERS + 1);
        let mut keys = lb.keys.clone();
        let publisher = keys.pop().expect("a publisher");
        for key in keys {
            lb.subscribe(key, CHANNEL);
        }
        Bench { lb, publisher }
    }

    /// One PUBLISH through the real fan-out. Returns deliveries.
    fn publish(&mut self, message: &str) -> usize {
        let msg = Msg {
            channel: CHANNEL,
            plain: true,
            payload: Payload::json(message),
            origin: Origin::Client(self.publisher),
        };
        let lb = &mut self.lb;
        fan_out(&mut lb.core, &mut lb.conns, &mut lb.turn, &msg)
    }

    /// End of the loop turn: flush every queue with output into a sink.
    fn flush(&mut self) -> usize {
        self.lb.end_turn(WRITE_BUDGET)
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
