//! The subscription index: which subscriptions match a message published on a channel.
//!
//! Owns two structures: a hash map from exact channel to subscribers, and a token trie
//! for patterns with `*` / `>` wildcards. Empty entries are pruned when the last
//! subscriber leaves, so the index never outgrows the live subscriptions. A subscriber
//! is an opaque copyable value (the broker stores a [`SubRef`]: connection key and
//! subscription id). A lookup returns every matching subscription, one entry per
//! pattern that matches; whether a connection then receives one copy or one per
//! subscription is the delivering codec's rule, never the router's. It never touches
//! sockets or buffers, and it does not remember which patterns a connection holds (the
//! connection does, and asks the router to insert each pattern once and to remove it on
//! unsubscribe or close).

mod pattern;
mod trie;

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::ids::ConnKey;
pub use pattern::pattern_matches;
use trie::Node;

/// A subscription as the broker's router stores it: the connection and the
/// connection-local subscription id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubRef {
    /// The subscribing connection.
    pub conn: ConnKey,
    /// The connection's id for this subscription.
    pub sid: u32,
}

/// Counters describing the index, for logs and `STATS`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouterStats {
    /// Subscriptions inserted since start.
    pub inserts: u64,
    /// Subscriptions removed since start.
    pub removes: u64,
    /// Lookups (one per publish).
    pub lookups: u64,
    /// Subscriptions returned by lookups (one per matching pattern).
    pub matches: u64,
    /// Distinct exact channels with at least one subscriber now.
    pub exact_channels: usize,
    /// Wildcard subscriptions now.
    pub wildcard_subscriptions: usize,
}

/// An exact channel and its subscribers (never empty while in the index).
struct Exact<S> {
    name: Box<str>,
    subs: Vec<S>,
}

/// The hash of an exact channel name.
#[inline(always)]
fn hash(name: &str) -> u64 {
    FxBuildHasher.hash_one(name)
}

/// Whether `a` and `b` are the same name. Names of 8 to 16 bytes (most channels) are
/// compared as two overlapping words, without a call to `memcmp`: measured
/// (callgrind, benches/instructions.rs) the call cost about 18 instructions of a
/// publish on `bench.pairs`.
#[inline(always)]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        (Some(a0), Some(b0)) if a.len() <= 16 => {
            a0 == b0 && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        _ => a == b,
    }
}

/// The entry of exact channel `channel`, if it has subscribers.
#[inline(always)]
fn find<'a, S>(exact: &'a HashTable<Exact<S>>, channel: &str) -> Option<&'a Exact<S>> {
    exact.find(hash(channel), |e| same_name(&e.name, channel))
}

/// The subscription index. See the module documentation.
pub struct Router<S = SubRef> {
    exact: HashTable<Exact<S>>,
    wild: Node<S>,
    stats: RouterStats,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router {
            exact: HashTable::new(),
            wild: Node::default(),
            stats: RouterStats::default(),
        }
    }
}

impl<S: Copy + Eq> Router<S> {
    /// An empty index.
    pub fn new() -> Router<S> {
        Router::default()
    }

    /// Adds `conn` as a subscriber of `pattern` (already validated). The caller makes
    /// sure a subscriber inserts a given pattern at most once.
    pub fn insert(&mut self, pattern: &str, is_wildcard: bool, conn: S) {
        self.stats.inserts += 1;
        if is_wildcard {
            self.wild.insert(pattern, conn);
            self.stats.wildcard_subscriptions += 1;
        } else {
            let entry = self
                .exact
                .entry(
                    hash(pattern),
                    |e| same_name(&e.name, pattern),
                    |e| hash(&e.name),
                )
                .or_insert_with(|| Exact {
                    name: pattern.into(),
                    subs: Vec::new(),
                })
                .into_mut();
            if entry.subs.is_empty() {
                self.stats.exact_channels += 1;
            }
            entry.subs.push(conn);
        }
    }

    /// Removes `conn` from `pattern`; returns whether it was there. Empty entries are
    /// pruned.
    pub fn remove(&mut self, pattern: &str, is_wildcard: bool, conn: S) -> bool {
        let removed = if is_wildcard {
            let removed = self.wild.remove(pattern, conn);
            if removed {
                self.stats.wildcard_subscriptions -= 1;
            }
            removed
        } else {
            match self
                .exact
                .find_entry(hash(pattern), |e| same_name(&e.name, pattern))
            {
                Ok(mut entry) => {
                    let subs = &mut entry.get_mut().subs;
                    match subs.iter().position(|&c| c == conn) {
                        Some(pos) => {
                            subs.swap_remove(pos);
                            if subs.is_empty() {
                                entry.remove();
                                self.stats.exact_channels -= 1;
                            }
                            true
                        }
                        None => false,
                    }
                }
                Err(_) => false,
            }
        };
        if removed {
            self.stats.removes += 1;
        }
        removed
    }

    /// Appends to `out` every subscription whose pattern matches `channel`: the exact
    /// subscribers first, then the wildcard ones. A subscriber holding several matching
    /// patterns appears once per pattern. Returns whether any wildcard subscription
    /// matched: only then can one subscriber appear more than once (it inserts a given
    /// pattern at most once, so the exact subscribers of a channel are distinct).
    pub fn lookup(&mut self, channel: &str, out: &mut Vec<S>) -> bool {
        let start = out.len();
        if let Some(e) = find(&self.exact, channel) {
            out.extend_from_slice(&e.subs);
        }
        let exact_end = out.len();
        if self.stats.wildcard_subscriptions > 0 {
            self.wild.collect(channel, out);
        }
        self.stats.lookups += 1;
        self.stats.matches += (out.len() - start) as u64;
        out.len() > exact_end
    }

    /// The exact subscribers of `channel` when the index holds no wildcard
    /// subscription, so that they are every match (each subscriber once), counted as
    /// one lookup as [`Router::lookup`] counts it; `None`, counting nothing, when
    /// wildcard subscriptions exist (then call [`Router::lookup`]). Lets the fan-out see
    /// a single receiver without copying the matches out.
    #[inline]
    pub fn lookup_exact(&mut self, channel: &str) -> Option<&[S]> {
        if self.stats.wildcard_subscriptions > 0 {
            return None;
        }
        let subs = find(&self.exact, channel).map_or(&[][..], |e| e.subs.as_slice());
        self.stats.lookups += 1;
        self.stats.matches += subs.len() as u64;
        Some(subs)
    }

    /// The index's counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Whether both indexes hold nothing at all, pruned trie nodes included. Exists for
    /// the fuzz targets (`fuzz/`): the counters cannot show a trie node left behind.
    #[doc(hidden)]
    pub fn is_pruned(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty()
    }
}

#[cfg(test)]
mod tests;
