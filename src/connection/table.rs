//! The table of live connections: a slab whose slots carry generations.
//!
//! Owns where connections live and which [`ConnKey`] names each. A key whose slot was
//! reused by a later connection no longer finds anything, so stale keys (in federation
//! tables, turn lists, timers) are harmless. It never decides when a connection comes
//! or goes.

use slab::Slab;

use super::Connection;
use crate::ids::ConnKey;

/// Every live connection. See the module documentation.
#[derive(Default)]
pub struct Conns {
    slab: Slab<Connection>,
    /// Next generation of each slot ever used.
    gens: Vec<u32>,
}

impl Conns {
    /// An empty table.
    pub fn new() -> Conns {
        Conns::default()
    }

    /// The key the next inserted connection will get.
    pub fn vacant_key(&self) -> ConnKey {
        let slot = self.slab.vacant_key();
        let gen = self.gens.get(slot).copied().unwrap_or(0);
        ConnKey::from_parts(slot as u32, gen)
    }

    /// Inserts a connection built for [`Conns::vacant_key`]; returns its key.
    pub fn insert(&mut self, conn: Connection) -> ConnKey {
        let key = conn.key();
        debug_assert_eq!(key, self.vacant_key(), "connection built for another key");
        let slot = self.slab.insert(conn);
        if self.gens.len() <= slot {
            self.gens.resize(slot + 1, 0);
        }
        key
    }

    /// The connection `key` names, if it is still there.
    #[inline]
    pub fn get(&self, key: ConnKey) -> Option<&Connection> {
        self.slab.get(key.slot()).filter(|c| c.key() == key)
    }

    /// The connection `key` names, if it is still there.
    #[inline]
    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut Connection> {
        self.slab.get_mut(key.slot()).filter(|c| c.key() == key)
    }

    /// The key of the connection in `slot` now (for readiness events, which carry
    /// slots).
    #[inline]
    pub fn key_at(&self, slot: usize) -> Option<ConnKey> {
        self.slab.get(slot).map(Connection::key)
    }

    /// Whether `key` names a live connection.
    pub fn contains(&self, key: ConnKey) -> bool {
        self.get(key).is_some()
    }

    /// Removes the connection `key` names; its slot's generation moves on.
    pub fn remove(&mut self, key: ConnKey) -> Option<Connection> {
        self.get(key)?;
        let conn = self.slab.try_remove(key.slot())?;
        self.gens[key.slot()] = key.gen().wrapping_add(1);
        Some(conn)
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.slab.iter().map(|(_, c)| c)
    }

    /// Keys of every connection.
    pub fn keys(&self) -> Vec<ConnKey> {
        self.slab.iter().map(|(_, c)| c.key()).collect()
    }

    /// Up to `n` keys from slot `from` on, and the slot to continue from (0 after the
    /// end): for sweeps over the table in bounded steps.
    pub fn keys_from(&self, from: usize, n: usize, out: &mut Vec<ConnKey>) -> usize {
        let cap = self.slab.capacity();
        let mut slot = from;
        while slot < cap && out.len() < n {
            if let Some(c) = self.slab.get(slot) {
                out.push(c.key());
            }
            slot += 1;
        }
        if slot >= cap {
            0
        } else {
            slot
        }
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}
