//! Federation: the interest table and loop prevention between linked brokers.
//!
//! Owns what this broker knows about its links: which broker is at the other end of
//! each, which patterns each link has asked for and on whose behalf (interest entries
//! keyed by origin broker and pattern, each with the path it travelled), what this
//! broker has announced on each link, and the per-origin sequence numbers used to drop
//! duplicate messages. It is pure bookkeeping: it never touches sockets or the router;
//! it returns [`Effect`]s that the reactor carries out. See `docs/federation.md`.
//!
//! Loop prevention has two layers. Every `INTEREST` and `ROUTE` carries the path of
//! brokers it crossed, and is never sent to (or accepted by) a broker already on it, so
//! nothing circulates. Every message carries its origin's sequence number, and a broker
//! remembers the fingerprints of recent messages (`dedup`), so a message that arrives
//! twice over two paths is delivered once.
//!
//! Trust: a link speaks only for paths that end at its own peer; a frame whose path
//! does not is refused ([`PathRefused`]). Who may become a link at all (the link
//! credential) is decided where `HELLO` is handled.

mod dedup;
mod links;

use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use dedup::Recent;
pub use dedup::DEDUP_WINDOW;
use links::{InterestKey, Link};
pub use links::{LinkInfo, LinkStats};

use crate::ids::ConnKey as ConnId;
use crate::protocol::{Path, MAX_HOPS};

/// Something the reactor must do after a federation change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the link's peer that the brokers on `path` (origin first, this broker
    /// last) want messages matching `pattern` (an `INTEREST`).
    Announce {
        /// The link to tell.
        link: ConnId,
        /// The pattern.
        pattern: Box<str>,
        /// The path to announce.
        path: Vec<Box<str>>,
    },
    /// Tell the link's peer that `origin` no longer wants `pattern` through this
    /// broker (a `NOINTEREST`).
    Withdraw {
        /// The link to tell.
        link: ConnId,
        /// The pattern.
        pattern: Box<str>,
        /// The broker whose interest ends.
        origin: Box<str>,
    },
    /// Subscribe the link to a pattern in the router (its first interest in it).
    Subscribe(ConnId, Box<str>),
    /// Unsubscribe the link from a pattern (its last interest in it ended).
    Unsubscribe(ConnId, Box<str>),
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// The peer has this broker's own name: a link to itself.
    #[error("link from a broker with our own name '{0}' (a link to itself?)")]
    Itself(String),
    /// Another live link already has this peer name.
    #[error("a link from a broker named '{0}' is already up")]
    Duplicate(String),
}

/// Why a frame from a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// The frame did not come from a link that completed its handshake.
    #[error("not a link")]
    NotALink,
    /// The path's last hop is not the link's peer: the peer speaks for someone else.
    #[error("path ends at '{last}', but the link's peer is '{peer}'")]
    WrongSender {
        /// The last name on the path.
        last: String,
        /// The link's peer.
        peer: String,
    },
    /// The path already holds this broker: the frame went round a loop.
    #[error("path already crossed this broker")]
    Loop,
}

/// What to do with a `ROUTE` that arrived on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteVerdict {
    /// New: deliver it locally and forward it.
    Deliver,
    /// Already delivered (it came over another path too): drop it.
    Duplicate,
    /// Not acceptable from this link.
    Refused(PathRefused),
}

/// The federation state of one broker. See the module documentation.
pub struct Federation {
    me: Box<str>,
    /// Local client subscriptions per pattern text.
    local: FxHashMap<Box<str>, usize>,
    /// Links that completed their handshake.
    links: FxHashMap<ConnId, Link>,
    /// Fingerprints of recently accepted routed messages.
    recent: Recent,
    /// Last sequence number given to a message published here.
    seq: u64,
    /// Messages dropped as duplicates.
    duplicates: u64,
}

impl Federation {
    /// State for a broker named `me` (a valid broker name).
    pub fn new(me: &str) -> Federation {
        // Sequence numbers start at the boot time in nanoseconds, so a restarted broker
        // continues above the numbers its peers remember from before.
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Federation {
            me: me.into(),
            local: FxHashMap::default(),
            links: FxHashMap::default(),
            recent: Recent::new(DEDUP_WINDOW),
            seq: boot,
            duplicates: 0,
        }
    }

    /// This broker's name.
    pub fn name(&self) -> &str {
        &self.me
    }

    /// Whether any link is up.
    pub fn has_links(&self) -> bool {
        !self.links.is_empty()
    }

    /// Whether `id` is a link that completed its handshake.
    pub fn is_link(&self, id: ConnId) -> bool {
        self.links.contains_key(&id)
    }

    /// Whether a message whose path is `path` (None: published here) may be sent on
    /// link `id`: the link is up, its peer has not seen the message, and the path has
    /// room for this broker (at most [`MAX_HOPS`] names).
    pub fn may_route(&self, id: ConnId, path: Option<Path<'_>>) -> bool {
        match self.links.get(&id) {
            // Forwarding adds this broker: a path already at the limit stops here.
            Some(link) => path.is_none_or(|p| p.len() < MAX_HOPS && !p.contains(&link.peer)),
            None => false,
        }
    }

    /// The next sequence number for a message published here.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Checks that link `id` may speak for `path`: the link is up, the path ends at its
    /// peer, and this broker is not on it yet.
    pub fn check_path(&self, id: ConnId, path: Path<'_>) -> Result<(), PathRefused> {
        let link = self.links.get(&id).ok_or(PathRefused::NotALink)?;
        let last = path.last();
        if last != &*link.peer {
            return Err(PathRefused::WrongSender {
                last: last.to_string(),
                peer: link.peer.to_string(),
            });
        }
        if path.contains(&self.me) {
            return Err(PathRefused::Loop);
        }
        Ok(())
    }

    /// Decides what to do with a `ROUTE` received on link `id`, and counts it. A
    /// message is a duplicate only if the same message (origin, number, channel and
    /// payload) was accepted recently.
    pub fn accept_route(
        &mut self,
        id: ConnId,
        channel: &str,
        seq: u64,
        path: Path<'_>,
        message: &[u8],
    ) -> RouteVerdict {
        if let Err(e) = self.check_path(id, path) {
            if let Some(link) = self.links.get_mut(&id) {
                link.stats.refused_in += 1;
            }
            return RouteVerdict::Refused(e);
        }
        if let Some(link) = self.links.get_mut(&id) {
            link.stats.routes_in += 1;
        }
        if self.recent.insert(path.origin(), seq, channel, message) {
            RouteVerdict::Deliver
        } else {
            self.duplicates += 1;
            RouteVerdict::Duplicate
        }
    }

    /// The longest frame link `id`'s peer accepts from us (its `max_frame` plus the
    /// link envelope), or `None` if `id` is not a link.
    pub fn peer_frame_limit(&self, id: ConnId) -> Option<usize> {
        self.links
            .get(&id)
            .map(|l| l.max_frame.saturating_add(crate::protocol::LINK_ENVELOPE))
    }

    /// Counts a message not sent on link `id` because its peer's `max_frame` is too
    /// small for it; returns the link's count so far.
    pub fn count_too_large(&mut self, id: ConnId) -> u64 {
        match self.links.get_mut(&id) {
            Some(link) => {
                link.stats.too_large += 1;
                link.stats.too_large
            }
            None => 0,
        }
    }

    /// Counts a message sent on link `id`.
    pub fn count_out(&mut self, id: ConnId) {
        if let Some(link) = self.links.get_mut(&id) {
            link.stats.routes_out += 1;
        }
    }

    /// Counts a slow-consumer disconnect of link `id`.
    pub fn count_slow(&mut self, id: ConnId) {
        if let Some(link) = self.links.get_mut(&id) {
            link.stats.slow_consumer += 1;
        }
    }

    /// Messages dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// A snapshot of every link, for `STATS` and logs.
    pub fn link_info(&self) -> Vec<LinkInfo> {
        let mut v: Vec<LinkInfo> = self.links.values().map(Link::info).collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// A local client subscribed to `pattern`.
    pub fn local_subscribed(&mut self, pattern: &str) -> Vec<Effect> {
        let n = self.local.entry(pattern.into()).or_insert(0);
        *n += 1;
        if *n > 1 || self.links.is_empty() {
            return Vec::new();
        }
        let key = (self.me.clone(), Box::from(pattern));
        self.reconcile(&key)
    }

    /// A local client's subscription to `pattern` ended.
    pub fn local_unsubscribed(&mut self, pattern: &str) -> Vec<Effect> {
        let Some(n) = self.local.get_mut(pattern) else {
            return Vec::new();
        };
        *n -= 1;
        if *n > 0 {
            return Vec::new();
        }
        self.local.remove(pattern);
        if self.links.is_empty() {
            return Vec::new();
        }
        let key = (self.me.clone(), Box::from(pattern));
        self.reconcile(&key)
    }

    /// A link finished its handshake with broker `peer`, which accepts frames of up to
    /// `max_frame` bytes plus the link envelope: record it and announce all of this
    /// broker's interest on it.
    pub fn link_up(
        &mut self,
        id: ConnId,
        peer: &str,
        outbound: bool,
        max_frame: usize,
    ) -> Result<Vec<Effect>, LinkRefused> {
        if peer == &*self.me {
            return Err(LinkRefused::Itself(peer.to_string()));
        }
        if self.links.values().any(|l| &*l.peer == peer) {
            return Err(LinkRefused::Duplicate(peer.to_string()));
        }
        self.links.insert(id, Link::new(peer, outbound, max_frame));
        let mut keys: Vec<InterestKey> = self
            .local
            .keys()
            .map(|p| (self.me.clone(), p.clone()))
            .collect();
        for link in self.links.values() {
            keys.extend(link.learned.keys().cloned());
        }
        keys.sort();
        keys.dedup();
        let mut effects = Vec::new();
        for key in &keys {
            self.reconcile_on(id, key, &mut effects);
        }
        Ok(effects)
    }

    /// Link `id` is gone: forget what it asked for and withdraw, on the other links,
    /// the interest that only it supported. (The reactor removes its router entries
    /// when it closes the connection.)
    pub fn link_down(&mut self, id: ConnId) -> Vec<Effect> {
        let Some(link) = self.links.remove(&id) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        for key in link.learned.keys() {
            effects.extend(self.reconcile(key));
        }
        effects
    }

    /// `INTEREST` arrived on link `id`. Refused when the link may not speak for the
    /// path ([`Federation::check_path`]).
    pub fn on_interest(
        &mut self,
        id: ConnId,
        pattern: &str,
        path: Path<'_>,
    ) -> Result<Vec<Effect>, PathRefused> {
        let checked = self.check_path(id, path);
        let link = self.links.get_mut(&id).ok_or(PathRefused::NotALink)?;
        if let Err(e) = checked {
            link.stats.refused_in += 1;
            return Err(e);
        }
        let key: InterestKey = (path.origin().into(), pattern.into());
        let names: Vec<Box<str>> = path.iter().map(Box::from).collect();
        let mut effects = Vec::new();
        if link.learn(key.clone(), names) {
            effects.push(Effect::Subscribe(id, key.1.clone()));
        }
        effects.extend(self.reconcile(&key));
        Ok(effects)
    }

    /// `NOINTEREST` arrived on link `id`.
    pub fn on_no_interest(&mut self, id: ConnId, pattern: &str, origin: &str) -> Vec<Effect> {
        let Some(link) = self.links.get_mut(&id) else {
            return Vec::new();
        };
        let key: InterestKey = (origin.into(), pattern.into());
        let mut effects = Vec::new();
        match link.forget(&key) {
            None => return effects,
            Some(true) => effects.push(Effect::Unsubscribe(id, key.1.clone())),
            Some(false) => {}
        }
        effects.extend(self.reconcile(&key));
        effects
    }

    /// Brings every link's view of `key` up to date.
    fn reconcile(&mut self, key: &InterestKey) -> Vec<Effect> {
        let mut effects = Vec::new();
        let ids: Vec<ConnId> = self.links.keys().copied().collect();
        for id in ids {
            self.reconcile_on(id, key, &mut effects);
        }
        effects
    }

    /// The path this broker should announce `key` with on link `to`, if any: its own
    /// local interest, or an entry learned on another link whose path does not hold
    /// `to`'s peer.
    fn wanted_path(&self, to: ConnId, key: &InterestKey) -> Option<Vec<Box<str>>> {
        let peer = &self.links.get(&to)?.peer;
        if key.0 == self.me {
            return self
                .local
                .contains_key(&key.1)
                .then(|| vec![self.me.clone()]);
        }
        if &key.0 == peer {
            return None;
        }
        self.links
            .iter()
            .filter(|(&id, _)| id != to)
            .filter_map(|(_, l)| l.learned.get(key))
            .filter(|path| path.len() < MAX_HOPS && !path.iter().any(|n| n == peer))
            .min_by_key(|path| path.len())
            .map(|path| {
                let mut p = path.clone();
                p.push(self.me.clone());
                p
            })
    }

    /// Sends `INTEREST` or `NOINTEREST` for `key` on link `to` if what it was told
    /// differs from what it should know.
    fn reconcile_on(&mut self, to: ConnId, key: &InterestKey, effects: &mut Vec<Effect>) {
        let wanted = self.wanted_path(to, key);
        let Some(link) = self.links.get_mut(&to) else {
            return;
        };
        let told = link.announced.get(key);
        if told == wanted.as_ref() {
            return;
        }
        link.stats.interest_updates_out += 1;
        match wanted {
            Some(path) => {
                link.announced.insert(key.clone(), path.clone());
                effects.push(Effect::Announce {
                    link: to,
                    pattern: key.1.clone(),
                    path,
                });
            }
            None => {
                link.announced.remove(key);
                effects.push(Effect::Withdraw {
                    link: to,
                    pattern: key.1.clone(),
                    origin: key.0.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
