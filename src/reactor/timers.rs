//! Deadlines: a few reactor-level timers, and a sweep over per-connection ones.
//!
//! Owns when the loop must wake without I/O. Reactor-level deadlines (resume accepting,
//! re-dial an upstream, the shutdown grace, giving idle output chunks back) sit in one
//! ordered map. Per-connection deadlines live on the connections themselves (the close
//! grace, `--auth-timeout`, `--frame-timeout`, `--write-deadline`) and are found by a sweep that visits a bounded slice of the table every
//! [`SWEEP_EVERY`], as Redis's `clientsCron` does: no timer entry per connection, so a
//! read or write never touches a timer structure and a reused slot can never fire an old
//! connection's timer. Every function takes `now` from the caller, so the logic is
//! tested with made-up instants, never by sleeping. It never acts on what is due; the
//! reactor does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::connection::{Conns, Deadlines, Due};
use crate::ids::ConnKey;

/// How often the per-connection sweep runs while any connection exists.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Connection slots visited per sweep: a full pass over a table of N slots takes
/// `N / SWEEP_BATCH * SWEEP_EVERY` (about 1 s at 20,000 connections), which bounds how
/// late a per-connection deadline fires.
pub const SWEEP_BATCH: usize = 2048;

/// A reactor-level deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Accepting was paused (fd exhaustion); resume.
    AcceptResume,
    /// Dial upstream `idx` again.
    Redial(usize),
    /// The shutdown grace period is over.
    ShutdownGrace,
    /// Give idle output buffers back (the chunk pool keeps what a burst left).
    TrimPool,
}

/// Reactor-level deadlines and the sweep's position. See the module documentation.
pub struct Timers {
    map: BTreeMap<(Instant, u64), Timer>,
    seq: u64,
    next_sweep: Instant,
    cursor: usize,
    batch: Vec<ConnKey>,
}

impl Timers {
    /// No deadlines; the first sweep is due one interval after `now`.
    pub fn new(now: Instant) -> Timers {
        Timers {
            map: BTreeMap::new(),
            seq: 0,
            next_sweep: now + SWEEP_EVERY,
            cursor: 0,
            batch: Vec::new(),
        }
    }

    /// Adds a deadline.
    pub fn add(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.map.insert((at, self.seq), timer);
    }

    /// Adds a deadline unless the same timer is already pending.
    pub fn add_once(&mut self, at: Instant, timer: Timer) {
        if !self.map.values().any(|&t| t == timer) {
            self.add(at, timer);
        }
    }

    /// The earliest deadline: a timer's, or the next sweep's when `sweeping` (any
    /// connection exists).
    pub fn next(&self, sweeping: bool) -> Option<Instant> {
        let timer = self.map.keys().next().map(|k| k.0);
        let sweep = sweeping.then_some(self.next_sweep);
        timer.into_iter().chain(sweep).min()
    }

    /// Takes one timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (&key, _) = self.map.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.map.remove(&key)
    }

    /// If a sweep is due, visits the next slice of the table and appends to `due` the
    /// connections one of whose deadlines has passed.
    pub fn sweep(
        &mut self,
        now: Instant,
        conns: &Conns,
        limits: &Deadlines,
        due: &mut Vec<(ConnKey, Due)>,
    ) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.batch.clear();
        self.cursor = conns.keys_from(self.cursor, SWEEP_BATCH, &mut self.batch);
        for &key in &self.batch {
            if let Some(what) = conns.get(key).and_then(|c| c.due(now, limits)) {
                due.push((key, what));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        t.add(t0 + Duration::from_millis(30), Timer::Redial(1));
        t.add(t0 + Duration::from_millis(10), Timer::AcceptResume);
        t.add(t0 + Duration::from_millis(30), Timer::Redial(2));
        assert_eq!(t.next(false), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let later = t0 + Duration::from_millis(30);
        assert_eq!(t.pop_due(later), Some(Timer::AcceptResume));
        assert_eq!(t.pop_due(later), Some(Timer::Redial(1)));
        assert_eq!(t.pop_due(later), Some(Timer::Redial(2)));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.next(false), None);
        t.add_once(t0, Timer::TrimPool);
        t.add_once(t0 + Duration::from_secs(1), Timer::TrimPool);
        assert_eq!(t.pop_due(later), Some(Timer::TrimPool));
        assert_eq!(
            t.pop_due(later + Duration::from_secs(5)),
            None,
            "added once"
        );
    }

    #[test]
    fn the_sweep_is_due_only_while_connections_exist() {
        let t0 = Instant::now();
        let t = Timers::new(t0);
        assert_eq!(t.next(false), None);
        assert_eq!(t.next(true), Some(t0 + SWEEP_EVERY));
    }

    #[test]
    fn a_sweep_runs_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        let conns = Conns::new();
        let limits = Deadlines {
            auth: Duration::from_secs(5),
            frame: Duration::from_secs(30),
            write: Duration::from_secs(10),
        };
        let mut due = Vec::new();
        t.sweep(t0, &conns, &limits, &mut due);
        assert_eq!(
            t.next(true),
            Some(t0 + SWEEP_EVERY),
            "not due yet: no change"
        );
        t.sweep(t0 + SWEEP_EVERY, &conns, &limits, &mut due);
        assert_eq!(t.next(true), Some(t0 + 2 * SWEEP_EVERY));
        assert!(due.is_empty());
    }
}
