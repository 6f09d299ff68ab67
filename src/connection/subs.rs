//! The subscriptions one connection holds, findable by pattern in constant time.
//!
//! Owns [`SubList`]: the list of a connection's [`Subscription`]s, each pattern at most
//! once, and, once the list is long, an index from pattern to position. A client holds
//! a few subscriptions (the index is never built: an idle connection pays for an empty
//! `Vec` and a `None`); a federation link holds one per channel its peer's side of the
//! tree wants, which can be every channel of 100,000 clients. Without the index each
//! new interest scanned the whole list first, so learning N channels cost O(N²) string
//! compares (measured: 26 s of a leaf's CPU for 80,000 channels). It never touches the
//! router: keeping the router in step is `core::subs`'s job.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::Subscription;

/// Past this many subscriptions a list builds its index (below it a scan of a few
/// short strings is cheaper than hashing).
const INDEX_FROM: usize = 16;

/// A connection's subscriptions (see the module documentation).
#[derive(Debug, Default)]
pub struct SubList {
    subs: Vec<Subscription>,
    /// Positions in `subs`, hashed by their pattern (which is not stored twice), kept
    /// while `subs` is longer than [`INDEX_FROM`].
    index: Option<Box<HashTable<usize>>>,
}

fn hash(pattern: &str) -> u64 {
    FxBuildHasher.hash_one(pattern)
}

impl SubList {
    /// The subscriptions, in no particular order.
    #[inline]
    pub fn as_slice(&self) -> &[Subscription] {
        &self.subs
    }

    /// How many.
    #[inline]
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    fn position(&self, pattern: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index
                .find(hash(pattern), |&at| &*self.subs[at].pattern == pattern)
                .copied(),
            None => self.subs.iter().position(|s| &*s.pattern == pattern),
        }
    }

    /// The subscription to exactly `pattern`, if held.
    pub fn find(&self, pattern: &str) -> Option<&Subscription> {
        self.position(pattern).map(|at| &self.subs[at])
    }

    /// Adds `sub` (the caller checked its pattern is new) and returns it.
    pub fn push(&mut self, sub: Subscription) -> &Subscription {
        debug_assert!(self.find(&sub.pattern).is_none());
        let at = self.subs.len();
        let h = hash(&sub.pattern);
        self.subs.push(sub);
        let subs = &self.subs;
        let rehash = |&i: &usize| hash(&subs[i].pattern);
        match &mut self.index {
            Some(index) => {
                index.insert_unique(h, at, rehash);
            }
            None if subs.len() > INDEX_FROM => {
                let mut index = HashTable::with_capacity(subs.len());
                for (i, s) in subs.iter().enumerate() {
                    index.insert_unique(hash(&s.pattern), i, rehash);
                }
                self.index = Some(Box::new(index));
            }
            None => {}
        }
        &self.subs[at]
    }

    /// Removes the subscription to exactly `pattern`.
    pub fn remove(&mut self, pattern: &str) -> Option<Subscription> {
        let at = self.position(pattern)?;
        let last = self.subs.len() - 1;
        if let Some(index) = &mut self.index {
            if let Ok(entry) = index.find_entry(hash(pattern), |&i| i == at) {
                entry.remove();
            }
            if at != last {
                // The last subscription moves into the freed place.
                let moved = hash(&self.subs[last].pattern);
                if let Some(slot) = index.find_mut(moved, |&i| i == last) {
                    *slot = at;
                }
            }
        }
        Some(self.subs.swap_remove(at))
    }

    /// Takes every subscription, leaving none (and no index).
    pub fn take(&mut self) -> Vec<Subscription> {
        self.index = None;
        std::mem::take(&mut self.subs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sub(pattern: &str, sid: u32) -> Subscription {
        Subscription {
            sid,
            pattern: pattern.into(),
            wildcard: false,
        }
    }

    proptest! {
        /// Adds and removes against a plain list: the same answers before and after the
        /// index exists, and the index always names the right position.
        #[test]
        fn agrees_with_a_plain_list(ops in prop::collection::vec((any::<bool>(), 0u8..60), 0..400)) {
            let mut list = SubList::default();
            let mut model: Vec<String> = Vec::new();
            for (sid, (add, n)) in ops.into_iter().enumerate() {
                let pattern = format!("p.{n}");
                if add {
                    if model.contains(&pattern) {
                        prop_assert!(list.find(&pattern).is_some());
                    } else {
                        prop_assert!(list.find(&pattern).is_none());
                        list.push(sub(&pattern, sid as u32));
                        model.push(pattern);
                    }
                } else {
                    let removed = list.remove(&pattern).map(|s| s.pattern.to_string());
                    let expected = model.iter().position(|p| *p == pattern).map(|at| model.swap_remove(at));
                    prop_assert_eq!(removed, expected);
                }
                prop_assert_eq!(list.len(), model.len());
                for p in &model {
                    prop_assert_eq!(list.find(p).map(|s| &*s.pattern), Some(p.as_str()));
                }
                if let Some(index) = &list.index {
                    prop_assert_eq!(index.len(), list.len());
                    let mut seen: Vec<usize> = index.iter().copied().collect();
                    seen.sort_unstable();
                    prop_assert_eq!(seen, (0..list.len()).collect::<Vec<_>>());
                }
            }
            let all = list.take();
            prop_assert_eq!(all.len(), model.len());
            prop_assert!(list.is_empty() && list.index.is_none());
        }
    }

    #[test]
    fn a_long_list_is_indexed_and_a_short_one_is_not() {
        let mut list = SubList::default();
        for i in 0..INDEX_FROM {
            list.push(sub(&format!("c.{i}"), i as u32));
        }
        assert!(list.index.is_none());
        list.push(sub("c.last", 99));
        assert!(list.index.is_some());
        assert_eq!(list.find("c.last").map(|s| s.sid), Some(99));
        assert_eq!(list.find("c.3").map(|s| s.sid), Some(3));
    }
}
