//! The checks of a `fleet` run: choosing the targeted clients, publishing to them
//! through the probers, and counting at every connection that each check arrived
//! exactly once, at its own subscriber and nowhere else.
//!
//! Owns the probe targets and the merging of the workers' counts. It never starts or
//! stops a worker and never measures memory (the parent in `mod.rs` does both).

use super::record::ProbeOutcome;
use super::wire::{Command, Report};
use super::workers::Workers;
use super::*;

/// One targeted channel: client `index`, its check published through prober `via`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeTarget {
    /// The client (and so the channel) targeted.
    pub(super) index: usize,
    /// The prober that publishes to it.
    pub(super) via: usize,
}

/// The workers' counts, merged.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Clients still held.
    pub(super) held: usize,
    received: u64,
    probed: HashMap<usize, u32>,
    checked: HashMap<usize, u32>,
}

impl Parent<'_> {
    /// `--probe` distinct random held clients, each with a random prober.
    pub(super) fn pick_targets(
        &self,
        wanted: usize,
        not_held: &HashSet<usize>,
    ) -> Vec<ProbeTarget> {
        let held = wanted - not_held.len().min(wanted);
        let n = self.args.probe.min(held);
        let mut chosen = HashSet::new();
        let mut targets = Vec::with_capacity(n);
        while targets.len() < n {
            let index = fastrand::usize(..wanted);
            if not_held.contains(&index) || !chosen.insert(index) {
                continue;
            }
            targets.push(ProbeTarget {
                index,
                via: fastrand::usize(..self.probers.len()),
            });
        }
        targets
    }

    /// Publishes `prefix.INDEX` on the channel of every target in `which`, each through
    /// its prober, then waits for each prober's PONG (the broker has read them all).
    fn publish(&mut self, targets: &[&ProbeTarget], prefix: &[u8]) -> Result<(), FleetError> {
        let protocol = self.common.target.protocol;
        let mut out: Vec<Vec<u8>> = vec![Vec::new(); self.probers.len()];
        let mut payload = Vec::new();
        for t in targets {
            payload.clear();
            payload.extend_from_slice(prefix);
            payload.extend_from_slice(format!(".{}", t.index).as_bytes());
            protocol.publish(
                &mut out[t.via],
                &crate::scenario::channel(self.args, t.index),
                &payload,
            );
        }
        for (via, bytes) in out.iter().enumerate() {
            if bytes.is_empty() {
                continue;
            }
            let addr = self.common.pub_targets[via].addr;
            let prober = &mut self.probers[via];
            prober
                .send(bytes)
                .and_then(|()| prober.ping_wait(Instant::now() + PROBER_WAIT, true))
                .map_err(|source| FleetError::Prober { addr, source })?;
        }
        Ok(())
    }

    /// Interest probes until every target received one (bounded), then one check per
    /// target, counted at every connection.
    pub(super) fn check(
        &mut self,
        workers: &mut Workers,
        targets: &[ProbeTarget],
    ) -> Result<ProbeOutcome, FleetError> {
        let mut outcome = ProbeOutcome {
            targets: targets.len(),
            ..ProbeOutcome::default()
        };
        // Probes: prove each target's path (retrying while interest may still travel).
        let within = Duration::from_secs_f64(self.args.interest_timeout);
        let deadline = Instant::now() + within;
        let mut pending: Vec<&ProbeTarget> = targets.iter().collect();
        while !pending.is_empty() && Instant::now() < deadline {
            outcome.interest_rounds += 1;
            self.publish(&pending, stamp::PROBE_PREFIX)?;
            let round_end = Instant::now() + ROUND_WAIT;
            loop {
                let c = ask_counts(workers)?;
                pending.retain(|t| !c.probed.contains_key(&t.index));
                if pending.is_empty() || Instant::now() >= round_end {
                    break;
                }
                std::thread::sleep(COUNTS_POLL);
            }
            if outcome.interest_rounds == 1 {
                outcome.first_round_reached = targets.len() - pending.len();
            }
        }
        if !pending.is_empty() {
            eprintln!(
                "loadgen fleet: {} of {} targets received no interest probe in {:.1} s; checking anyway",
                pending.len(),
                targets.len(),
                within.as_secs_f64()
            );
        }
        // Checks: one per target, fresh payloads.
        let all: Vec<&ProbeTarget> = targets.iter().collect();
        self.publish(&all, stamp::CHECK_PREFIX)?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.drain);
        loop {
            let c = ask_counts(workers)?;
            if targets.iter().all(|t| c.checked.contains_key(&t.index)) {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(COUNTS_POLL);
        }
        // Anything still on its way (a second copy) arrives meanwhile.
        std::thread::sleep(QUIET);
        let c = ask_counts(workers)?;
        let targeted: HashSet<usize> = targets.iter().map(|t| t.index).collect();
        for t in targets {
            match c.checked.get(&t.index).copied().unwrap_or(0) {
                1 => outcome.exactly_once += 1,
                0 => outcome.lost += 1,
                _ => outcome.duplicated += 1,
            }
            if c.checked.get(&t.index) != Some(&1) && outcome.wrong_samples.len() < WRONG_SHOWN {
                outcome.wrong_samples.push(t.index);
            }
        }
        let elsewhere = |m: &HashMap<usize, u32>| -> u64 {
            m.iter()
                .filter(|(i, _)| !targeted.contains(i))
                .map(|(_, &n)| u64::from(n))
                .sum()
        };
        outcome.misdelivered_checks = elsewhere(&c.checked);
        outcome.misdelivered_probes = elsewhere(&c.probed);
        let counted: u64 = c
            .checked
            .values()
            .chain(c.probed.values())
            .map(|&n| u64::from(n))
            .sum();
        outcome.foreign = c.received.saturating_sub(counted);
        Ok(outcome)
    }
}

/// Asks every worker for its counts and merges them.
pub(super) fn ask_counts(workers: &mut Workers) -> Result<Counts, FleetError> {
    workers.tell(Command::Counts)?;
    let reports = workers.collect(
        "report their counts",
        COUNTS_DEADLINE,
        |_, r| matches!(r, Report::Counts { .. }).then_some(r),
        || {},
    )?;
    let mut merged = Counts::default();
    for r in reports {
        if let Report::Counts {
            held,
            received,
            probed,
            checked,
        } = r
        {
            merged.held += held;
            merged.received += received;
            merged.probed.extend(probed);
            merged.checked.extend(checked);
        }
    }
    Ok(merged)
}
