//! The broker-wide memory bound.
//!
//! Owns enforcing `--max-memory` over the sum of every connection's unfinished input
//! frame and queued output (per connection, `--max-frame` and `--max-pending` bound
//! each alone; 19,000 connections could still pin far more than the machine has). When
//! the sum passes the limit, the connections holding the most are shed, largest first:
//! one holding mostly queued output as a slow consumer, one holding mostly an
//! unfinished frame as `stale`. It never looks at what the bytes mean.

use super::{CloseReason, Core, Turn};
use crate::connection::Conns;

/// Most connections shed per loop turn (each costs a scan of the table).
const SHED_PER_TURN: usize = 16;

impl Core {
    /// Bytes held now in unfinished input and queued output.
    pub fn memory_used(&self) -> usize {
        self.pool.queued() + self.input_held
    }

    /// Sheds the largest holders while the broker is over `--max-memory`.
    pub fn enforce_memory(&mut self, conns: &mut Conns, turn: &mut Turn) {
        for _ in 0..SHED_PER_TURN {
            if self.memory_used() <= self.settings.max_memory {
                return;
            }
            let biggest = conns
                .iter()
                .filter(|c| c.receives())
                .map(|c| (c.key(), c.pending(), c.partial_len()))
                .max_by_key(|&(_, output, input)| output + input);
            let Some((key, output, input)) = biggest else {
                return;
            };
            if output + input == 0 {
                return;
            }
            self.stats.memory_shed += 1;
            tracing::warn!(
                used = self.memory_used(),
                max_memory = self.settings.max_memory,
                output,
                input,
                "over the memory limit: shedding the connection holding the most"
            );
            if output >= input {
                self.shed_output(conns, turn, key, &CloseReason::MemoryOutput);
            } else {
                self.close(conns, turn, key, &CloseReason::MemoryInput);
            }
        }
    }
}
