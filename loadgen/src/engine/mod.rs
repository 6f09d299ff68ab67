//! The load engine: worker threads with their own mio event loops, driven through the
//! phases Setup -> Run -> Drain -> Exit by the coordinating thread, which also samples CPU
//! time at the edges of the measured window and adds up the workers' counts.

pub mod plan;
pub mod shared;
pub mod worker;

use crate::procinfo::CpuSample;
use hdrhistogram::Histogram;
use mio::{Poll, Waker};
use plan::Plan;
use shared::{Failure, Phase, Shared};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::{Worker, WorkerReport, WAKE};

/// How often the coordinator looks at the counters while waiting.
const TICK: Duration = Duration::from_millis(5);

/// A running set of workers.
pub struct Engine {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<WorkerReport>>,
    started: Instant,
}

/// How connection setup went.
#[derive(Debug, Clone)]
pub struct SetupOutcome {
    /// Connections confirmed.
    pub ready: usize,
    /// Connections that failed.
    pub failed: usize,
    /// Seconds from the first connect to the last confirmation.
    pub secs: f64,
    /// Failures, first first.
    pub failures: Vec<Failure>,
}

impl SetupOutcome {
    /// Confirmed connections per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ready as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// CPU and wall time of the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall seconds measured.
    pub secs: f64,
    /// loadgen CPU seconds in the window.
    pub loadgen_cpu: f64,
    /// Broker CPU seconds in the window, when known.
    pub broker_cpu: Option<f64>,
    /// True when every message was received by every subscriber before the drain timeout.
    pub drained: bool,
}

/// The workers' counts, added up.
#[derive(Debug)]
pub struct Totals {
    /// Messages published inside the measured window.
    pub published: u64,
    /// Deliveries of those messages.
    pub delivered: u64,
    /// Messages sent in the whole run.
    pub sent_total: u64,
    /// Deliveries expected in the whole run (sent x subscribers).
    pub expected_total: u64,
    /// Deliveries received in the whole run.
    pub received_total: u64,
    /// Expected deliveries that never arrived.
    pub loss: u64,
    /// Deliveries out of order (or duplicated).
    pub reorder: u64,
    /// Payloads that were not ours or came from an unexpected publisher.
    pub foreign: u64,
    /// Errors after setup.
    pub errors: u64,
    /// The first error texts.
    pub error_samples: Vec<String>,
    /// Latency of measured deliveries, microseconds.
    pub latency: Histogram<u64>,
}

impl Engine {
    /// Spawns the workers of `plan`; they start connecting at once.
    pub fn start(plan: Plan) -> io::Result<Engine> {
        let mut polls = Vec::with_capacity(plan.threads);
        let mut wakers = Vec::with_capacity(plan.threads);
        for _ in 0..plan.threads {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKE)?);
            polls.push(poll);
        }
        let shared = Arc::new(Shared::new(plan, wakers));
        let started = Instant::now();
        let mut handles = Vec::new();
        for (id, poll) in polls.into_iter().enumerate() {
            let worker = Worker::new(id, poll, Arc::clone(&shared))?;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-{id}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Engine {
            shared,
            handles,
            started,
        })
    }

    /// The shared state (plan, counters).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Waits until every connection is confirmed, failed or skipped; prints progress to
    /// stderr for large runs.
    pub fn wait_setup(&self) -> SetupOutcome {
        let s = &self.shared;
        let total = s.plan.conns.len();
        let stall_limit = s.plan.connect_timeout * 2 + Duration::from_secs(5);
        let mut last_done = 0;
        let mut last_change = Instant::now();
        let mut last_print = Instant::now();
        loop {
            let ready = s.ready.load(Ordering::SeqCst);
            let done = ready + s.failed.load(Ordering::SeqCst) + s.skipped.load(Ordering::SeqCst);
            if done >= total {
                break;
            }
            if done != last_done {
                last_done = done;
                last_change = Instant::now();
            } else if last_change.elapsed() > stall_limit {
                s.stop_connecting.store(true, Ordering::SeqCst);
                eprintln!("setup stalled at {done}/{total}; giving up");
                break;
            }
            if total >= 2000 && last_print.elapsed() > Duration::from_secs(1) {
                eprintln!("  connected {ready}/{total}");
                last_print = Instant::now();
            }
            std::thread::sleep(TICK);
        }
        let last_ready = Duration::from_micros(s.last_ready_us.load(Ordering::SeqCst));
        let began = self.started.saturating_duration_since(s.base);
        SetupOutcome {
            ready: s.ready.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            secs: last_ready.saturating_sub(began).as_secs_f64(),
            failures: s.failures.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }

    /// Publishes for `warmup + duration`, measuring the last `duration`, then drains for at
    /// most `drain`.
    pub fn run(
        &self,
        warmup: Duration,
        duration: Duration,
        drain: Duration,
        broker_pid: Option<u32>,
    ) -> Measured {
        let s = &self.shared;
        let start = s.now_us() + 1000;
        let measure_start = start + warmup.as_micros() as u64;
        let measure_end = measure_start + duration.as_micros() as u64;
        s.run_start_us.store(start, Ordering::SeqCst);
        s.measure_start_us.store(measure_start, Ordering::SeqCst);
        s.measure_end_us.store(measure_end, Ordering::SeqCst);
        s.set_phase(Phase::Run);
        sleep_until(s, measure_start);
        let before = CpuSample::now(broker_pid);
        let t0 = Instant::now();
        sleep_until(s, measure_end);
        let after = CpuSample::now(broker_pid);
        let secs = t0.elapsed().as_secs_f64();
        s.set_phase(Phase::Drain);
        let deadline = Instant::now() + drain;
        while s.drained_workers.load(Ordering::SeqCst) < s.plan.threads && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let drained = loop {
            let all = s
                .flows
                .iter()
                .all(|f| f.completed() >= f.sent.load(Ordering::SeqCst));
            if all {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(TICK);
        };
        let (loadgen_cpu, broker_cpu) = after.since(&before);
        Measured {
            secs,
            loadgen_cpu,
            broker_cpu,
            drained,
        }
    }

    /// Stops the workers and adds up their reports.
    pub fn finish(self) -> Totals {
        self.shared.set_phase(Phase::Exit);
        let threads = self.handles.len();
        let reports: Vec<WorkerReport> = self
            .handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect();
        let lost_workers = threads - reports.len();
        let plan = &self.shared.plan;
        let pubs = plan.publishers as usize;
        let mut sent = vec![0u64; pubs];
        let mut received = vec![0u64; pubs];
        let mut latency = worker::latency_histogram();
        let mut totals = Totals {
            published: 0,
            delivered: 0,
            sent_total: 0,
            expected_total: 0,
            received_total: 0,
            loss: 0,
            reorder: 0,
            foreign: 0,
            errors: 0,
            error_samples: Vec::new(),
            latency: latency.clone(),
        };
        for r in &reports {
            totals.published += r.published_window;
            totals.delivered += r.delivered_window;
            totals.reorder += r.reorder;
            totals.foreign += r.foreign;
            totals.errors += r.errors;
            for text in &r.error_samples {
                if totals.error_samples.len() < 10 {
                    totals.error_samples.push(text.clone());
                }
            }
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = latency.add(&r.latency);
            for (acc, v) in sent.iter_mut().zip(&r.sent_by_pub) {
                *acc += v;
            }
            for (acc, v) in received.iter_mut().zip(&r.received_by_pub) {
                *acc += v;
            }
        }
        for group in &plan.groups {
            for id in group.publishers.clone() {
                let id = id as usize;
                let expected = sent[id] * u64::from(group.subscribers);
                totals.sent_total += sent[id];
                totals.expected_total += expected;
                totals.received_total += received[id];
                totals.loss += expected.saturating_sub(received[id]);
            }
        }
        if lost_workers > 0 {
            totals.errors += lost_workers as u64;
            totals.error_samples.push(format!(
                "{lost_workers} worker thread(s) panicked; counts are partial"
            ));
        }
        totals.latency = latency;
        totals
    }
}

fn sleep_until(shared: &Shared, at_us: u64) {
    loop {
        let now = shared.now_us();
        if now >= at_us {
            return;
        }
        std::thread::sleep(Duration::from_micros((at_us - now).min(100_000)));
    }
}
