//! The broker's counters as one value.
//!
//! Owns [`Snapshot`]: everything `STATS` reports (and the monitoring endpoints will),
//! taken at one instant from the core. It is plain data with a serde form; it never
//! changes broker state and knows no wire format (the codec adds its envelope).

use serde::Serialize;

use super::Core;
use crate::federation::LinkInfo;
use crate::protocol::ErrorCode;

/// The router's part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterSnapshot {
    /// Distinct exact channels with subscribers now.
    pub exact_channels: usize,
    /// Wildcard subscriptions now.
    pub wildcard_subscriptions: usize,
    /// Subscriptions inserted since start.
    pub inserts: u64,
    /// Subscriptions removed since start.
    pub removes: u64,
    /// Lookups since start.
    pub lookups: u64,
    /// Matches returned by lookups since start.
    pub matches: u64,
}

/// Memory held by connections, against `--max-memory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemorySnapshot {
    /// Bytes in unfinished input frames and queued output now.
    pub used: usize,
    /// Of which unfinished input.
    pub input: usize,
    /// Of which queued output.
    pub output: usize,
    /// `--max-memory`.
    pub limit: usize,
}

/// Connections closed by the broker's bounds, since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShedSnapshot {
    /// Over `--max-memory`.
    pub memory: u64,
    /// An unfinished frame stalled past `--frame-timeout`.
    pub frame_timeout: u64,
    /// Not authenticated within `--auth-timeout`.
    pub auth_timeout: u64,
    /// Output not taken within `--write-deadline`.
    pub write_deadline: u64,
}

/// The broker's state at one instant. Field order is the order `STATS` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Broker name.
    pub server: String,
    /// Broker version.
    pub version: &'static str,
    /// Connections counted against `--max-connections` now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused since start.
    pub refused: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Messages published by clients of this broker.
    pub published: u64,
    /// Deliveries queued.
    pub delivered: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// `ERROR` frames sent, by code.
    pub errors: serde_json::Map<String, serde_json::Value>,
    /// The router's counters.
    pub router: RouterSnapshot,
    /// One entry per federation link.
    pub links: Vec<LinkInfo>,
    /// Routed messages dropped as already delivered.
    pub duplicates_dropped: u64,
    /// Memory held by connections.
    pub memory: MemorySnapshot,
    /// Connections closed by the broker's bounds.
    pub shed: ShedSnapshot,
}

impl Snapshot {
    /// Takes a snapshot of `core`.
    pub fn of(core: &Core) -> Snapshot {
        let s = &core.stats;
        let r = core.router.stats();
        Snapshot {
            server: core.fed.name().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            connections: core.clients,
            accepted: s.accepted,
            refused: s.refused,
            closed: s.closed,
            frames_in: s.frames_in,
            published: s.published,
            delivered: s.delivered,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            errors: ErrorCode::ALL
                .iter()
                .map(|&c| (c.as_str().to_string(), s.errors_of(c).into()))
                .collect(),
            router: RouterSnapshot {
                exact_channels: r.exact_channels,
                wildcard_subscriptions: r.wildcard_subscriptions,
                inserts: r.inserts,
                removes: r.removes,
                lookups: r.lookups,
                matches: r.matches,
            },
            links: core.fed.link_info(),
            duplicates_dropped: core.fed.duplicates(),
            memory: MemorySnapshot {
                used: core.memory_used(),
                input: core.input_held,
                output: core.pool.queued(),
                limit: core.settings.max_memory,
            },
            shed: ShedSnapshot {
                memory: s.memory_shed,
                frame_timeout: s.frame_timeouts,
                auth_timeout: s.auth_timeouts,
                write_deadline: s.write_stalls,
            },
        }
    }
}
