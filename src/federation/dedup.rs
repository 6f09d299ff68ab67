//! Duplicate detection for routed messages.
//!
//! Owns the memory of which routed messages this broker has already delivered: a
//! bounded window of fingerprints, each a keyed hash of a message's origin, sequence
//! number, channel and payload. A message is a duplicate only if the very same message
//! (same origin, number, channel and bytes) was seen within the window, so no frame,
//! forged or not, can make another message undeliverable: a forged far-ahead sequence
//! number, a restarted origin whose numbers went down, or a broker name reused after its
//! broker left all leave later messages alone. The hash is keyed with a per-process
//! random key, so a peer cannot craft collisions. It never decides where messages go.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

use rustc_hash::FxHashSet;

/// How many recent routed messages are remembered. In a topology with a cycle, a copy
/// that arrives over a second path more than this many routed messages after the first
/// is delivered again; in a tree (the hub topology) no message ever arrives twice.
pub const DEDUP_WINDOW: usize = 1 << 18;

/// The fingerprints of the last [`DEDUP_WINDOW`] routed messages accepted.
pub(super) struct Recent {
    key: RandomState,
    set: FxHashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Recent {
    /// An empty window holding up to `capacity` fingerprints (allocated as used).
    pub(super) fn new(capacity: usize) -> Recent {
        Recent {
            key: RandomState::new(),
            set: FxHashSet::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a message; false if the same message is already in the window.
    pub(super) fn insert(&mut self, origin: &str, seq: u64, channel: &str, message: &[u8]) -> bool {
        let mut h = self.key.build_hasher();
        origin.hash(&mut h);
        seq.hash(&mut h);
        channel.hash(&mut h);
        h.write(message);
        let print = h.finish();
        if !self.set.insert(print) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(print);
        true
    }

    /// Fingerprints held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_twice_is_a_duplicate() {
        let mut r = Recent::new(8);
        assert!(r.insert("a", 1, "x", b"1"));
        assert!(!r.insert("a", 1, "x", b"1"));
    }

    #[test]
    fn a_forged_sequence_number_does_not_hide_other_messages() {
        let mut r = Recent::new(8);
        assert!(r.insert("leaf-a", u64::MAX, "poison", b"\"forged\""));
        // The real origin's messages, with lower numbers, still pass.
        assert!(r.insert("leaf-a", 5, "news", b"1"));
        assert!(r.insert("leaf-a", 6, "news", b"2"));
        // Even the same number with other content is another message.
        assert!(r.insert("leaf-a", u64::MAX, "news", b"3"));
    }

    #[test]
    fn a_restarted_origin_may_count_from_lower_numbers() {
        let mut r = Recent::new(8);
        assert!(r.insert("leaf-a", 1000, "x", b"1"));
        assert!(r.insert("leaf-a", 3, "x", b"1"));
    }

    #[test]
    fn the_window_is_bounded() {
        let mut r = Recent::new(4);
        for seq in 0..10 {
            assert!(r.insert("a", seq, "x", b"m"));
        }
        assert_eq!(r.len(), 4);
        // Seq 0 has left the window; seq 9 has not.
        assert!(r.insert("a", 0, "x", b"m"));
        assert!(!r.insert("a", 9, "x", b"m"));
    }
}
