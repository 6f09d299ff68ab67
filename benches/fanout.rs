//! Queueing one published message to 1,000 subscribers, as the reactor does per
//! PUBLISH: look the channel up, encode the MESSAGE once, push it into every
//! subscriber's write queue, and (in the `_drain` variants) flush each queue into a
//! writer that accepts everything, so the per-delivery cost of the broker's own work
//! is visible without the kernel's.
//!
//! Throughput is in elements = deliveries, so criterion's "elem/s" is deliveries per
//! second and time / 1,000 is the cost of one delivery. Payloads: 16 B and 1 KiB.
//! Both are below the reactor's 8 KiB share threshold, so the reactor copies them;
//! the `shared` variant shows what an `Rc` per queue would cost instead.

use std::hint::black_box;
use std::io;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pubsub::connection::{ChunkPool, WriteQueue};
use pubsub::protocol::encode_message;
use pubsub::router::Router;

/// Subscribers of the channel.
const SUBSCRIBERS: usize = 1000;

/// The reactor's per-connection write budget per flush (1 MiB, `WRITE_BUDGET`).
const WRITE_BUDGET: usize = 1024 * 1024;

/// The channel published to.
const CHANNEL: &str = "bench.fanout";

/// How a frame reaches the queues.
#[derive(Clone, Copy)]
enum Push {
    /// `WriteQueue::push`: copied into each queue (the reactor below 8 KiB).
    Copy,
    /// `WriteQueue::push_shared`: one `Rc` clone per queue (the reactor from 8 KiB).
    Shared,
}

/// The reactor's state that a publish touches, reduced to what matters here.
struct Broker {
    router: Router,
    /// Write queues indexed by connection id (the reactor keeps them in a slab of
    /// connections).
    queues: Vec<WriteQueue>,
    /// Output buffers shared by the queues, as in the reactor.
    pool: ChunkPool,
    /// Reused lookup result.
    matches: Vec<usize>,
    /// Reused encoding buffer.
    frame: Vec<u8>,
    /// Connections with output, flushed at the end of the turn.
    flush_list: Vec<usize>,
    flush_queued: Vec<bool>,
}

impl Broker {
    fn new() -> Broker {
        let mut router = Router::new();
        for id in 0..SUBSCRIBERS {
            router.insert(CHANNEL, false, id);
        }
        Broker {
            router,
            queues: (0..SUBSCRIBERS).map(|_| WriteQueue::default()).collect(),
            pool: ChunkPool::default(),
            matches: Vec::with_capacity(SUBSCRIBERS),
            frame: Vec::with_capacity(2048),
            flush_list: Vec::with_capacity(SUBSCRIBERS),
            flush_queued: vec![false; SUBSCRIBERS],
        }
    }

    /// One PUBLISH: lookup, encode once, queue to every match. Returns deliveries.
    fn publish(&mut self, message: &str, how: Push) -> usize {
        self.matches.clear();
        self.router.lookup(CHANNEL, &mut self.matches);
        self.frame.clear();
        encode_message(&mut self.frame, CHANNEL, message);
        let shared: Option<Rc<[u8]>> = match how {
            Push::Copy => None,
            Push::Shared => Some(Rc::from(&self.frame[..])),
        };
        for &cid in &self.matches {
            let q = &mut self.queues[cid];
            match &shared {
                Some(f) => q.push_shared(f),
                None => q.push(&mut self.pool, &self.frame),
            }
            if !self.flush_queued[cid] {
                self.flush_queued[cid] = true;
                self.flush_list.push(cid);
            }
        }
        self.matches.len()
    }

    /// End of the loop turn: flush every queue with output into `io::sink()`.
    fn flush(&mut self) -> usize {
        let mut sink = io::sink();
        let mut written = 0;
        for cid in self.flush_list.drain(..) {
            self.flush_queued[cid] = false;
            match self.queues[cid].write_to(&mut self.pool, &mut sink, WRITE_BUDGET) {
                Ok(f) => written += f.written,
                Err(e) => panic!("sink cannot fail: {e}"),
            }
        }
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

        // Queues start empty, as after a flush that emptied them: each push allocates
        // the queue's deque and first chunk. The flush is not timed.
        g.bench_function(format!("push/{name}"), |b| {
            b.iter_batched_ref(
                Broker::new,
                |br| br.publish(black_box(&msg), Push::Copy),
                BatchSize::LargeInput,
            )
        });

        // Steady state when subscribers keep up: one publish per turn, then every
        // queue is flushed (and gives its memory back).
        let mut br = Broker::new();
        g.bench_function(format!("push_drain/{name}"), |b| {
            b.iter(|| {
                let n = br.publish(black_box(&msg), Push::Copy);
                br.flush();
                n
            })
        });

        let mut br = Broker::new();
        g.bench_function(format!("push_shared_drain/{name}"), |b| {
            b.iter(|| {
                let n = br.publish(black_box(&msg), Push::Shared);
                br.flush();
                n
            })
        });

        // A busy turn: 16 publishes queue up before the flush, so allocation and the
        // writev are paid once per 16 deliveries to a subscriber.
        g.throughput(Throughput::Elements(16 * SUBSCRIBERS as u64));
        let mut br = Broker::new();
        g.bench_function(format!("burst16_push_drain/{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for _ in 0..16 {
                    n += br.publish(black_box(&msg), Push::Copy);
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
