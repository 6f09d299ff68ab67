//! The interest barrier for runs whose subscribers use other brokers than their
//! publishers (`--sub-target`). Federation propagates subscriptions asynchronously:
//! `SUBSCRIBED` on a leaf says nothing about when a publisher's broker will route to it,
//! and a message published earlier is dropped there (at most once), which the run would
//! count as loss. So before publishing starts, the coordinating thread publishes probe
//! payloads (`~probe`, see [`stamp::PROBE_PREFIX`]) on every channel through the
//! publishers' brokers, round after round, until every subscriber has received one.
//!
//! A probe that arrived proves the whole path (every hop's interest), end to end, which
//! counting interests in `STATS` cannot: it needs no knowledge of the topology and also
//! works for wildcard or multi-path setups. Workers note probes and otherwise ignore them.

use super::blocking::BlockingClient;
use crate::cli::Target;
use crate::engine::plan::Role;
use crate::engine::shared::Shared;
use crate::stamp;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Pause between probe rounds: long enough for a link round trip on loopback, short
/// enough that the barrier adds little to a run.
const ROUND_PAUSE: Duration = Duration::from_millis(2);
/// Client ids of probe connections (MQTT needs unique ones), above any worker's.
const PROBE_CLIENT_ID: u64 = 1 << 60;

/// Why the barrier gave up.
#[derive(Debug, Error)]
pub enum BarrierError {
    /// A probe connection failed.
    #[error("interest probe via {addr}: {source}")]
    Io {
        /// The publishers' broker.
        addr: SocketAddr,
        /// What went wrong.
        source: io::Error,
    },
    /// Some subscribers never received a probe.
    #[error(
        "interest did not propagate within {secs:.1} s: {unreached} of {subscribers} \
         subscribers received no probe"
    )]
    Timeout {
        /// Subscribers without a probe.
        unreached: usize,
        /// Subscribers probed.
        subscribers: usize,
        /// Seconds waited.
        secs: f64,
    },
}

/// How long the barrier took.
#[derive(Debug, Clone, Copy)]
pub struct InterestWait {
    /// Seconds from the first probe until every subscriber had one.
    pub secs: f64,
}

/// One channel to probe: its name, the broker its publishers use, and its subscribers
/// (plan indices).
struct Pending {
    channel: Vec<u8>,
    addr: SocketAddr,
    subs: Vec<usize>,
}

/// Waits until every subscriber of every channel that has publishers has received a
/// probe published through its publishers' broker; returns `Ok(None)` at once when no
/// subscriber uses another broker than its publishers.
pub fn wait_for_interest(
    shared: &Shared,
    timeout: Duration,
) -> Result<Option<InterestWait>, BarrierError> {
    let plan = &shared.plan;
    if !plan.crosses_brokers() {
        return Ok(None);
    }
    let mut pending: Vec<Pending> = plan
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.publishers.is_empty())
        .map(|(g, group)| Pending {
            channel: group.channel.clone(),
            addr: plan.group_pub_addr(g),
            subs: Vec::new(),
        })
        .collect();
    let index: HashMap<usize, usize> = plan
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.publishers.is_empty())
        .enumerate()
        .map(|(i, (g, _))| (g, i))
        .collect();
    for (i, conn) in plan.conns.iter().enumerate() {
        if let Role::Subscriber { group } = conn.role {
            if let Some(&p) = index.get(&(group as usize)) {
                pending[p].subs.push(i);
            }
        }
    }
    let subscribers: usize = pending.iter().map(|p| p.subs.len()).sum();

    let started = Instant::now();
    let deadline = started + timeout;
    let mut clients: HashMap<SocketAddr, BlockingClient> = HashMap::new();
    for (n, p) in pending.iter().enumerate() {
        if clients.contains_key(&p.addr) {
            continue;
        }
        let target = Target {
            protocol: plan.target.protocol,
            addr: p.addr,
        };
        let client = BlockingClient::connect(target, PROBE_CLIENT_ID + n as u64, timeout).map_err(
            |source| BarrierError::Io {
                addr: p.addr,
                source,
            },
        )?;
        clients.insert(p.addr, client);
    }

    let mut out: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    loop {
        pending.retain(|p| {
            !p.subs
                .iter()
                .all(|&i| shared.conn_probed[i].load(Ordering::Relaxed) > 0)
        });
        if pending.is_empty() {
            return Ok(Some(InterestWait {
                secs: started.elapsed().as_secs_f64(),
            }));
        }
        if Instant::now() >= deadline {
            let unreached = pending
                .iter()
                .flat_map(|p| &p.subs)
                .filter(|&&i| shared.conn_probed[i].load(Ordering::Relaxed) == 0)
                .count();
            return Err(BarrierError::Timeout {
                unreached,
                subscribers,
                secs: started.elapsed().as_secs_f64(),
            });
        }
        for p in &pending {
            let buf = out.entry(p.addr).or_default();
            plan.target
                .protocol
                .publish(buf, &p.channel, stamp::PROBE_PREFIX);
        }
        // A ping after each round paces the probes to what the broker has read, and
        // consumes the replies of protocols that always answer a publish (Redis).
        for (addr, buf) in out.iter_mut().filter(|(_, b)| !b.is_empty()) {
            let Some(client) = clients.get_mut(addr) else {
                continue;
            };
            let sent = client
                .send(buf)
                .and_then(|()| client.ping_wait(Instant::now() + timeout, true));
            sent.map_err(|source| BarrierError::Io {
                addr: *addr,
                source,
            })?;
            buf.clear();
        }
        std::thread::sleep(ROUND_PAUSE);
    }
}
