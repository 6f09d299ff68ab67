//! The plan of a run: which channels exist (groups), which connections publish or subscribe
//! to which, on which event-loop thread and from which source address. Built by a
//! scenario, read by the workers; it never changes once the run starts.

use crate::cli::Target;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

/// One channel with its publishers and subscribers. Every subscriber of a group receives
/// every message of every publisher of the group, in order per publisher.
#[derive(Debug, Clone)]
pub struct Group {
    /// Channel (topic, subject) name.
    pub channel: Vec<u8>,
    /// Global ids of the group's publishers (contiguous).
    pub publishers: Range<u32>,
    /// Number of subscriber connections.
    pub subscribers: u32,
}

/// What one connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Subscribes to its group's channel and counts what arrives.
    Subscriber { group: u32 },
    /// Publishes stamped messages to its group's channel.
    Publisher { id: u32, group: u32 },
}

/// One connection to open.
#[derive(Debug, Clone, Copy)]
pub struct ConnSpec {
    /// Its job.
    pub role: Role,
    /// Index of the worker thread that owns it.
    pub thread: usize,
    /// Local address to bind before connecting (`--source`).
    pub source: Option<IpAddr>,
    /// Broker to connect to (see [`Plan::pub_addrs`] and [`Plan::sub_addrs`]).
    pub addr: SocketAddr,
}

/// How publishers decide when to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// At most this many messages in flight per publisher (throughput scenarios).
    Window(u64),
    /// This many messages per second per publisher, stamped with the intended send time.
    Rate(f64),
    /// Publishers send nothing (connection scenarios).
    Idle,
}

/// Everything the workers need to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect and which protocol to speak.
    pub target: Target,
    /// Channels.
    pub groups: Vec<Group>,
    /// Connections, subscribers first so they are ready before publishers start.
    pub conns: Vec<ConnSpec>,
    /// Number of worker threads.
    pub threads: usize,
    /// Subscribers are spread over threads `0..sub_threads` (a paced publisher gets a
    /// thread of its own above them).
    pub sub_threads: usize,
    /// Publishing rule.
    pub pacing: Pacing,
    /// Payload size in bytes.
    pub payload: usize,
    /// Time a connection may take to connect and be confirmed.
    pub connect_timeout: Duration,
    /// Connection attempts in flight at once, over all workers.
    pub connecting: usize,
    /// Number of publishers (ids are `0..publishers`).
    pub publishers: u32,
    /// Brokers publishers connect to: group `g` publishes through `pub_addrs[g % len]`.
    /// Set before adding groups; defaults to the target alone.
    pub pub_addrs: Vec<SocketAddr>,
    /// Brokers subscribers connect to: subscriber `j` of group `g` uses
    /// `sub_addrs[(g + j) % len]`, so one subscriber per group (pairs) with equal lists
    /// stays on its publisher's broker. Defaults to the target alone.
    pub sub_addrs: Vec<SocketAddr>,
}

impl Plan {
    /// Starts an empty plan.
    pub fn new(target: Target, threads: usize, pacing: Pacing, payload: usize) -> Self {
        Plan {
            target,
            groups: Vec::new(),
            conns: Vec::new(),
            threads: threads.max(1),
            sub_threads: threads.max(1),
            pacing,
            payload,
            connect_timeout: Duration::from_secs(10),
            connecting: 128,
            publishers: 0,
            pub_addrs: vec![target.addr],
            sub_addrs: vec![target.addr],
        }
    }

    /// Adds a group with `publishers` publishers and `subscribers` subscribers, placing
    /// connections round-robin over threads (publishers on `pub_thread` when given).
    pub fn add_group(
        &mut self,
        channel: Vec<u8>,
        publishers: u32,
        subscribers: u32,
        pub_thread: Option<usize>,
    ) -> u32 {
        let group = self.groups.len() as u32;
        let first = self.publishers;
        self.publishers += publishers;
        self.groups.push(Group {
            channel,
            publishers: first..first + publishers,
            subscribers,
        });
        let g = group as usize;
        let pub_addr = pick(&self.pub_addrs, g, self.target.addr);
        for j in 0..subscribers as usize {
            let thread = self.conns.len() % self.sub_threads;
            self.conns.push(ConnSpec {
                role: Role::Subscriber { group },
                thread,
                source: None,
                addr: pick(&self.sub_addrs, g + j, self.target.addr),
            });
        }
        for id in first..first + publishers {
            let thread = pub_thread.unwrap_or(self.conns.len() % self.sub_threads);
            self.conns.push(ConnSpec {
                role: Role::Publisher { id, group },
                thread,
                source: None,
                addr: pub_addr,
            });
        }
        group
    }

    /// The broker group `g`'s publishers connect to.
    pub fn group_pub_addr(&self, g: usize) -> SocketAddr {
        pick(&self.pub_addrs, g, self.target.addr)
    }

    /// True when some subscriber connects to another broker than its group's publishers,
    /// so its messages must cross federation links (and interest must propagate first).
    pub fn crosses_brokers(&self) -> bool {
        self.conns.iter().any(|c| match c.role {
            Role::Subscriber { group } => {
                let g = &self.groups[group as usize];
                !g.publishers.is_empty() && c.addr != self.group_pub_addr(group as usize)
            }
            Role::Publisher { .. } => false,
        })
    }

    /// Orders connections so all subscribers come before any publisher, and spreads them
    /// over `sources` round-robin.
    pub fn finish(&mut self, sources: &[IpAddr]) {
        self.conns
            .sort_by_key(|c| matches!(c.role, Role::Publisher { .. }));
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if !sources.is_empty() {
                conn.source = Some(sources[i % sources.len()]);
            }
        }
    }
}

/// `addrs[i % len]`, or `fallback` for an empty list.
fn pick(addrs: &[SocketAddr], i: usize, fallback: SocketAddr) -> SocketAddr {
    if addrs.is_empty() {
        fallback
    } else {
        addrs[i % addrs.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_target;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Pairs with equal publisher and subscriber lists stay on one broker per pair;
    /// fan-out spreads subscribers round-robin.
    #[test]
    fn spreading_over_brokers() {
        let target = parse_target("json://127.0.0.1:7401").unwrap();
        let mut plan = Plan::new(target, 2, Pacing::Window(10), 16);
        plan.pub_addrs = vec![addr(7401), addr(7402)];
        plan.sub_addrs = plan.pub_addrs.clone();
        for g in 0..4 {
            plan.add_group(format!("c.{g}").into_bytes(), 1, 1, None);
        }
        plan.finish(&[]);
        assert!(!plan.crosses_brokers());
        for conn in &plan.conns {
            let g = match conn.role {
                Role::Subscriber { group } | Role::Publisher { group, .. } => group,
            };
            assert_eq!(conn.addr, addr(7401 + (g % 2) as u16));
        }

        let mut plan = Plan::new(target, 2, Pacing::Window(10), 16);
        plan.sub_addrs = vec![addr(7402), addr(7403)];
        plan.add_group(b"c.0".to_vec(), 1, 4, None);
        plan.finish(&[]);
        assert!(plan.crosses_brokers());
        let subs: Vec<u16> = plan.conns[..4].iter().map(|c| c.addr.port()).collect();
        assert_eq!(subs, [7402, 7403, 7402, 7403]);
        assert_eq!(plan.conns[4].addr, addr(7401));
    }
}
