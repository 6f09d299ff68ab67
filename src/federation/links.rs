//! One federation link's bookkeeping.
//!
//! Owns, per link: the peer's broker name, the interest entries learned from it, the
//! entries announced to it, and its traffic counters. No policy lives here.

use rustc_hash::FxHashMap;

/// An interest entry: (origin broker, pattern).
pub(super) type InterestKey = (Box<str>, Box<str>);

/// Traffic counters of one link.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Messages received on the link.
    pub routes_in: u64,
    /// Messages sent on the link.
    pub routes_out: u64,
    /// `INTEREST`/`NOINTEREST` frames sent.
    pub interest_updates_out: u64,
    /// `INTEREST`/`NOINTEREST` frames received.
    pub interest_updates_in: u64,
    /// Times the link was closed as a slow consumer.
    pub slow_consumer: u64,
    /// Frames refused because their path did not end at the link's peer (or held
    /// this broker).
    pub refused_in: u64,
    /// Messages not sent because they exceed the peer's `max_frame`.
    pub too_large: u64,
}

/// What `STATS` shows about a link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkInfo {
    /// The broker at the other end.
    pub peer: String,
    /// `out` when this broker opened the link (`--upstream`), else `in`.
    pub direction: &'static str,
    /// Interest entries learned from the peer.
    pub interest_in: usize,
    /// Interest entries announced to the peer.
    pub interest_out: usize,
    /// The longest frame the peer accepts (from its link `HELLO` or `WELCOME`).
    pub max_frame: usize,
    /// Counters.
    #[serde(flatten)]
    pub stats: LinkStats,
}

/// One link that completed its handshake.
pub(super) struct Link {
    pub(super) peer: Box<str>,
    outbound: bool,
    /// The peer's `max_frame`.
    pub(super) max_frame: usize,
    /// Entries learned from the peer, with the path each travelled (origin first).
    pub(super) learned: FxHashMap<InterestKey, Vec<Box<str>>>,
    /// Number of learned entries per pattern (the router holds the link once per
    /// pattern).
    patterns: FxHashMap<Box<str>, usize>,
    /// Entries announced to the peer, with the path sent.
    pub(super) announced: FxHashMap<InterestKey, Vec<Box<str>>>,
    pub(super) stats: LinkStats,
}

impl Link {
    pub(super) fn new(peer: &str, outbound: bool, max_frame: usize) -> Link {
        Link {
            peer: peer.into(),
            outbound,
            max_frame,
            learned: FxHashMap::default(),
            patterns: FxHashMap::default(),
            announced: FxHashMap::default(),
            stats: LinkStats::default(),
        }
    }

    /// Records an entry; returns true when it is the link's first for its pattern.
    pub(super) fn learn(&mut self, key: InterestKey, path: Vec<Box<str>>) -> bool {
        self.stats.interest_updates_in += 1;
        let pattern = key.1.clone();
        if self.learned.insert(key, path).is_some() {
            return false;
        }
        let n = self.patterns.entry(pattern).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Drops an entry; `None` if unknown, else whether it was the pattern's last.
    pub(super) fn forget(&mut self, key: &InterestKey) -> Option<bool> {
        self.stats.interest_updates_in += 1;
        self.learned.remove(key)?;
        let n = self.patterns.get_mut(&key.1)?;
        *n -= 1;
        if *n == 0 {
            self.patterns.remove(&key.1);
            return Some(true);
        }
        Some(false)
    }

    pub(super) fn info(&self) -> LinkInfo {
        LinkInfo {
            peer: self.peer.to_string(),
            direction: if self.outbound { "out" } else { "in" },
            interest_in: self.learned.len(),
            interest_out: self.announced.len(),
            max_frame: self.max_frame,
            stats: self.stats,
        }
    }
}
