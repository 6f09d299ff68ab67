//! The publishing scenarios. Throughput (clients, fanout, fanin, pairs) is windowed: each
//! publisher keeps at most W messages in flight. Latency is paced at a fixed rate from a
//! publisher on a thread of its own, stamped with the intended send time so that a stall
//! shows up in the percentiles instead of silently slowing the sender (coordinated
//! omission).

use super::{barrier, channel, Common, ScenarioError};
use crate::cli::{Args, ScenarioName};
use crate::engine::plan::{Pacing, Plan};
use crate::engine::Engine;
use crate::report::{Latency, Params, Record};
use crate::stamp::MAX_PUBLISHERS;
use std::time::Duration;

/// Default window per publisher.
const WINDOW_DEFAULT: u64 = 1000;
/// Deliveries in flight the default window allows over the whole run.
const IN_FLIGHT_DELIVERIES: u64 = 1_000_000;
/// Smallest default window.
const WINDOW_MIN: u64 = 16;

/// The shape of a run: how many channels, publishers per channel, subscribers per channel.
struct Shape {
    channels: usize,
    pubs_per_channel: usize,
    subs_total: usize,
}

fn shape(name: ScenarioName, args: &Args) -> Shape {
    match name {
        ScenarioName::Fanout | ScenarioName::Latency => Shape {
            channels: 1,
            pubs_per_channel: 1,
            subs_total: args.subscribers.unwrap_or(10),
        },
        ScenarioName::Fanin => Shape {
            channels: 1,
            pubs_per_channel: args.publishers.unwrap_or(16),
            subs_total: 1,
        },
        ScenarioName::Pairs => {
            let n = args.subscribers.unwrap_or(100);
            Shape {
                channels: n,
                pubs_per_channel: 1,
                subs_total: n,
            }
        }
        _ => {
            let clients = args.clients.unwrap_or(1000);
            Shape {
                channels: args.publishers.unwrap_or(10).clamp(1, clients.max(1)),
                pubs_per_channel: 1,
                subs_total: clients,
            }
        }
    }
}

/// Runs clients, fanout, fanin, pairs or latency.
pub fn run(name: ScenarioName, args: &Args, common: &Common) -> Result<Record, ScenarioError> {
    let shape = shape(name, args);
    if shape.channels == 0 || shape.pubs_per_channel == 0 || shape.subs_total == 0 {
        return Err(ScenarioError::Usage(
            "subscribers, publishers and clients must be at least 1".into(),
        ));
    }
    let publishers = shape.channels * shape.pubs_per_channel;
    if publishers as u64 >= MAX_PUBLISHERS {
        return Err(ScenarioError::Usage(format!(
            "at most {} publishers",
            MAX_PUBLISHERS - 1
        )));
    }
    let paced = name == ScenarioName::Latency;
    let pacing = if paced {
        if !(args.rate > 0.0 && args.rate.is_finite()) {
            return Err(ScenarioError::Usage("--rate must be positive".into()));
        }
        Pacing::Rate(args.rate)
    } else {
        let default = (IN_FLIGHT_DELIVERIES / (shape.subs_total * shape.pubs_per_channel) as u64)
            .clamp(WINDOW_MIN, WINDOW_DEFAULT);
        Pacing::Window(args.window.map_or(default, |w| w.max(1) as u64))
    };
    let threads = common.threads;
    let mut plan = Plan::new(
        common.target,
        threads + usize::from(paced),
        pacing,
        args.payload,
    );
    plan.sub_threads = threads;
    plan.pub_addrs = common.pub_targets.iter().map(|t| t.addr).collect();
    plan.sub_addrs = common.sub_targets.iter().map(|t| t.addr).collect();
    plan.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    plan.connecting = args.connecting.max(1);
    let pub_thread = paced.then_some(threads);
    for c in 0..shape.channels {
        let subs =
            shape.subs_total / shape.channels + usize::from(c < shape.subs_total % shape.channels);
        plan.add_group(
            channel(args, c),
            shape.pubs_per_channel as u32,
            subs as u32,
            pub_thread,
        );
    }
    plan.finish(&args.source);
    let total = plan.conns.len();
    let params = Params {
        subscribers: shape.subs_total,
        publishers,
        channels: shape.channels,
        payload: args.payload,
        window: match pacing {
            Pacing::Window(w) => Some(w),
            _ => None,
        },
        rate: paced.then_some(args.rate),
        duration: args.duration,
        warmup: args.warmup,
        threads: plan.threads,
        sources: Vec::new(),
    };

    let engine = Engine::start(plan)?;
    let setup = engine.wait_setup();
    if setup.ready < total {
        // Still a record, so a benchmark script keeps the data point and the reason.
        drop(engine.finish());
        let first = setup
            .failures
            .first()
            .map_or("setup stalled".to_string(), |f| f.to_string());
        return Ok(Record {
            scenario: name.as_str().into(),
            target: common.target.to_string(),
            params,
            connections: setup.ready,
            connect_secs: setup.secs,
            connect_rate: setup.rate(),
            errors: (total - setup.ready) as u64,
            error_samples: vec![format!(
                "setup: only {} of {total} connections confirmed; first failure: {first}",
                setup.ready
            )],
            ..Record::default()
        });
    }
    // Cross-broker runs: publish only once every subscriber is reachable (see barrier).
    let interest_wait_secs = match barrier::wait_for_interest(
        engine.shared(),
        Duration::from_secs_f64(args.connect_timeout),
    ) {
        Ok(wait) => wait.map(|w| w.secs),
        Err(e) => {
            drop(engine.finish());
            return Ok(Record {
                scenario: name.as_str().into(),
                target: common.target.to_string(),
                params,
                connections: setup.ready,
                connect_secs: setup.secs,
                connect_rate: setup.rate(),
                errors: 1,
                error_samples: vec![format!("setup: {e}")],
                ..Record::default()
            });
        }
    };
    let measured = engine.run(
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
        Duration::from_secs_f64(args.drain),
        args.broker_pid,
    );
    let totals = engine.finish();
    let mut error_samples = totals.error_samples;
    if !measured.drained {
        error_samples.push(format!(
            "drain timed out after {} s: {} of {} deliveries arrived",
            args.drain, totals.received_total, totals.expected_total
        ));
    }
    if totals.foreign > 0 {
        error_samples.push(format!(
            "{} payloads without a valid stamp from this run",
            totals.foreign
        ));
    }
    Ok(Record {
        scenario: name.as_str().into(),
        target: common.target.to_string(),
        params,
        connections: setup.ready,
        connect_secs: setup.secs,
        connect_rate: setup.rate(),
        published: totals.published,
        delivered: totals.delivered,
        published_per_sec: totals.published as f64 / measured.secs,
        delivered_per_sec: totals.delivered as f64 / measured.secs,
        latency_us: Latency::of(&totals.latency),
        errors: totals.errors + totals.foreign,
        error_samples,
        loss: totals.loss,
        reorder: totals.reorder,
        loadgen_cpu_secs: measured.loadgen_cpu,
        broker_cpu_secs: measured.broker_cpu,
        interest_wait_secs,
        ..Record::default()
    })
}
