//! The `propagation` scenario: how long after `SUBSCRIBED` a subscription on one broker
//! starts receiving what is published on another (federation interest propagation).
//!
//! Each trial opens a fresh subscriber on `--sub-target` (rotating over a list) and
//! subscribes it to a fresh channel, while one publisher on `--target`, on a thread of
//! its own, publishes probe payloads on that channel every `--probe-interval-us`. The
//! delay is the time from `SUBSCRIBED` arriving to the first probe arriving, both taken
//! when the subscriber's `read` returned. Probes published before the interest reached
//! the publisher's broker are dropped there, so the delay is the propagation window,
//! quantised by the probe interval (the resolution), plus one message's transit across
//! the hops. Publishing and timing use plain blocking sockets: one trial at a time.

use super::blocking::{BlockingClient, Next};
use super::{Common, ScenarioError};
use crate::adapter::Event;
use crate::cli::Args;
use crate::engine::worker::latency_histogram;
use crate::report::{Latency, Params, Propagation, Record};
use crate::stamp;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one trial waits for its first probe before counting a timeout.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive timeouts after which the run stops (the topology is not connected).
const MAX_TIMEOUTS_IN_A_ROW: usize = 5;
/// Pause between trials, so one trial's unsubscribe traffic is not in the next's way.
const TRIAL_GAP: Duration = Duration::from_millis(1);
/// Smallest probe interval accepted, microseconds (sleep granularity makes less a lie).
const MIN_INTERVAL_US: u64 = 10;
/// Value of [`ProbeState::trial`] while no trial is running.
const IDLE: u64 = u64::MAX;
/// Client ids for MQTT-style protocols; the publisher takes the first.
const CLIENT_ID_BASE: u64 = 1 << 61;

/// What the coordinating thread and the probe publisher share.
struct ProbeState {
    /// The trial whose channel is probed now, or [`IDLE`].
    trial: AtomicU64,
    /// Set to end the publisher thread.
    stop: AtomicBool,
    /// Probes written so far.
    sent: AtomicU64,
}

/// Fresh channel of trial `i`; `nonce` keeps repeated runs on the same brokers apart.
fn trial_channel(prefix: &str, nonce: u64, i: u64) -> Vec<u8> {
    format!("{prefix}.prop.{nonce}.{i}").into_bytes()
}

/// Runs the trials.
pub fn run(args: &Args, common: &Common) -> Result<Record, ScenarioError> {
    if args.trials == 0 {
        return Err(ScenarioError::Usage("--trials must be at least 1".into()));
    }
    if args.probe_interval_us < MIN_INTERVAL_US {
        return Err(ScenarioError::Usage(format!(
            "--probe-interval-us must be at least {MIN_INTERVAL_US}"
        )));
    }
    let interval = Duration::from_micros(args.probe_interval_us);
    let connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);

    let publisher = BlockingClient::connect(common.target, CLIENT_ID_BASE, connect_timeout)?;
    let state = Arc::new(ProbeState {
        trial: AtomicU64::new(IDLE),
        stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
    });
    let prefix = args.channel_prefix.clone();
    let thread_state = Arc::clone(&state);
    let handle = std::thread::Builder::new()
        .name("loadgen-probe".into())
        .spawn(move || probe_publisher(publisher, &thread_state, interval, &prefix, nonce))?;

    let started = Instant::now();
    let mut delays = latency_histogram();
    let mut rtts = latency_histogram();
    let mut timeouts = 0;
    let mut in_a_row = 0;
    let mut errors = 0u64;
    let mut error_samples = Vec::new();
    let mut connect_secs = 0.0;
    let mut connections = 0;
    for i in 0..args.trials as u64 {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        let sub_target = common.sub_targets[i as usize % common.sub_targets.len()];
        let channel = trial_channel(&args.channel_prefix, nonce, i);
        let t_connect = Instant::now();
        let outcome = BlockingClient::connect(sub_target, CLIENT_ID_BASE + 1 + i, connect_timeout)
            .and_then(|mut sub| {
                connect_secs += t_connect.elapsed().as_secs_f64();
                connections += 1;
                state.trial.store(i, Ordering::SeqCst);
                let result = one_trial(&mut sub, &channel);
                state.trial.store(IDLE, Ordering::SeqCst);
                result
            });
        match outcome {
            Ok(Some(t)) => {
                in_a_row = 0;
                delays.saturating_record(t.delay_us);
                rtts.saturating_record(t.subscribe_rtt_us);
            }
            Ok(None) => {
                timeouts += 1;
                in_a_row += 1;
                if error_samples.len() < 10 {
                    error_samples.push(format!(
                        "trial {i}: no probe within {:.1} s of SUBSCRIBED on {sub_target}",
                        TRIAL_TIMEOUT.as_secs_f64()
                    ));
                }
            }
            Err(e) => {
                errors += 1;
                in_a_row += 1;
                if error_samples.len() < 10 {
                    error_samples.push(format!("trial {i} on {sub_target}: {e}"));
                }
            }
        }
        if in_a_row >= MAX_TIMEOUTS_IN_A_ROW {
            error_samples.push(format!(
                "stopped after {in_a_row} failed trials in a row: are the brokers linked?"
            ));
            break;
        }
        std::thread::sleep(TRIAL_GAP);
    }
    let elapsed = started.elapsed().as_secs_f64();
    state.stop.store(true, Ordering::SeqCst);
    match handle.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            errors += 1;
            error_samples.push(format!("probe publisher: {e}"));
        }
        Err(_) => {
            errors += 1;
            error_samples.push("probe publisher thread panicked".into());
        }
    }
    let completed = delays.len() as usize;
    let probes_sent = state.sent.load(Ordering::SeqCst);
    Ok(Record {
        scenario: "propagation".into(),
        target: common.target.to_string(),
        params: Params {
            subscribers: 1,
            publishers: 1,
            channels: args.trials,
            payload: stamp::PROBE_PREFIX.len(),
            window: None,
            rate: Some(1e6 / args.probe_interval_us as f64),
            duration: elapsed,
            warmup: 0.0,
            threads: 2,
            sources: Vec::new(),
        },
        connections,
        connect_secs,
        connect_rate: if connect_secs > 0.0 {
            connections as f64 / connect_secs
        } else {
            0.0
        },
        published: probes_sent,
        delivered: completed as u64,
        latency_us: Latency::of(&delays),
        errors: errors + timeouts as u64,
        error_samples,
        propagation: Some(Propagation {
            trials: args.trials,
            completed,
            timeouts,
            probe_interval_us: args.probe_interval_us,
            probes_sent,
            subscribe_rtt_p50_us: if rtts.is_empty() {
                0
            } else {
                rtts.value_at_quantile(0.5)
            },
        }),
        ..Record::default()
    })
}

/// The timings of one completed trial.
struct Trial {
    /// SUBSCRIBED received -> first probe received.
    delay_us: u64,
    /// SUBSCRIBE sent -> SUBSCRIBED received.
    subscribe_rtt_us: u64,
}

/// Subscribes `sub` to `channel` and waits for SUBSCRIBED, then for the first probe;
/// `Ok(None)` when none came within [`TRIAL_TIMEOUT`].
fn one_trial(sub: &mut BlockingClient, channel: &[u8]) -> io::Result<Option<Trial>> {
    let protocol = sub.protocol();
    let mut out = Vec::new();
    protocol.subscribe(&mut out, channel);
    let by_pong = protocol.subscribe_confirmed_by_pong();
    if by_pong {
        protocol.ping(&mut out);
    }
    let sent = Instant::now();
    sub.send(&out)?;
    let mut subscribed: Option<Instant> = None;
    let mut probe: Option<Instant> = None;
    let mut failure = None;
    sub.read_until(sent + TRIAL_TIMEOUT, |event, at| match event {
        Event::Subscribed if !by_pong => {
            subscribed.get_or_insert(at);
            Next::Continue
        }
        Event::Pong if by_pong => {
            subscribed.get_or_insert(at);
            Next::Continue
        }
        Event::Message(payload) if payload.starts_with(stamp::PROBE_PREFIX) => {
            // Cannot precede the confirmation on one connection; if it did, delay 0.
            subscribed.get_or_insert(at);
            probe = Some(at);
            Next::Stop
        }
        Event::ServerError { code, text } => {
            failure = Some(format!("ERROR {code}: {text}"));
            Next::Stop
        }
        _ => Next::Continue,
    })?;
    if let Some(text) = failure {
        return Err(io::Error::other(text));
    }
    Ok(match (subscribed, probe) {
        (Some(s), Some(p)) => Some(Trial {
            delay_us: p.saturating_duration_since(s).as_micros() as u64,
            subscribe_rtt_us: s.saturating_duration_since(sent).as_micros() as u64,
        }),
        _ => None,
    })
}

/// The probe publisher's loop: every `interval`, while a trial runs, publish one probe
/// on its channel. Intended send times advance by `interval`; when it falls behind it
/// skips ahead instead of bursting. At the end, a ping confirms the broker accepted
/// every probe (a server error surfaces here).
fn probe_publisher(
    mut client: BlockingClient,
    state: &ProbeState,
    interval: Duration,
    prefix: &str,
    nonce: u64,
) -> io::Result<()> {
    crate::procinfo::tighten_timer_slack();
    let protocol = client.protocol();
    let mut out = Vec::new();
    let mut channel_of = (IDLE, Vec::new());
    let mut next = Instant::now();
    while !state.stop.load(Ordering::SeqCst) {
        let trial = state.trial.load(Ordering::SeqCst);
        if trial != IDLE {
            if channel_of.0 != trial {
                channel_of = (trial, trial_channel(prefix, nonce, trial));
            }
            out.clear();
            protocol.publish(&mut out, &channel_of.1, stamp::PROBE_PREFIX);
            if let Err(e) = client.send(&out) {
                // Ends the trials too: without probes they would only time out.
                state.stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
            state.sent.fetch_add(1, Ordering::Relaxed);
        }
        next += interval;
        let now = Instant::now();
        if next <= now {
            next = now;
        } else {
            std::thread::sleep(next - now);
        }
    }
    client.ping_wait(Instant::now() + Duration::from_secs(5), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_channels_are_fresh_and_plain() {
        let a = trial_channel("bench", 42, 0);
        let b = trial_channel("bench", 42, 1);
        assert_ne!(a, b);
        assert_eq!(a, b"bench.prop.42.0");
        // Probe payloads are never mistaken for stamps.
        assert!(stamp::read(b"~probe.........").is_none());
    }
}
