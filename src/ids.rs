//! Identities that outlive a slab slot.
//!
//! Owns [`ConnKey`]: a connection's slab slot plus a generation, so a key kept after
//! its connection closed (in a federation table, a timer, a turn list) can never be
//! mistaken for the next connection that takes the same slot. No behaviour lives here.

use std::fmt;

/// A connection's key: its slab slot and the generation of that slot when the
/// connection was inserted. Compare keys, never slots.
///
/// Both halves live in one `u64` (slot high, generation low) so comparing two keys is
/// one comparison on the fan-out path, and keys order by slot, then generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey(u64);

impl ConnKey {
    /// A key from its parts. The connection table hands out real keys; this exists for
    /// tables kept outside it and for simulations in tests.
    pub const fn from_parts(slot: u32, gen: u32) -> ConnKey {
        ConnKey(((slot as u64) << 32) | gen as u64)
    }

    /// A key no connection ever has (its slot is past any table this process can
    /// hold): "nobody", where a key is expected.
    pub const NONE: ConnKey = ConnKey(u64::MAX);

    /// The slab slot (also the `mio::Token` of the connection's socket).
    pub const fn slot(self) -> usize {
        (self.0 >> 32) as usize
    }

    /// The slot's generation.
    pub const fn gen(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}g{}", self.slot(), self.gen())
    }
}

impl From<u32> for ConnKey {
    /// Generation 0 of `slot`: for simulations and tests.
    fn from(slot: u32) -> ConnKey {
        ConnKey::from_parts(slot, 0)
    }
}
