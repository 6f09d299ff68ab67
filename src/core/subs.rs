//! The one place a subscription is added or removed.
//!
//! Owns keeping three views of a subscription in step: the connection's own list, the
//! router's index, and federation's count of local interest (and, for links, the
//! patterns a peer asked for). A client's SUBSCRIBE, UNSUBSCRIBE and close, and a
//! link's INTEREST and NOINTEREST, all come through here; nothing else touches the
//! router's subscriptions. Permissions will be checked here too.

use super::{Core, Refusal, Turn};
use crate::codec;
use crate::connection::Conns;
use crate::federation::Effect;
use crate::ids::ConnKey;
use crate::protocol::validate_pattern;
use crate::router::SubRef;

impl Core {
    /// A client subscribes to `pattern`. Returns its subscription count. Subscribing
    /// to a pattern it holds changes nothing.
    pub fn subscribe(
        &mut self,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
        pattern: &str,
    ) -> Result<usize, Refusal> {
        let wildcard = validate_pattern(pattern).map_err(|e| Refusal::BadChannel(e.to_string()))?;
        let Some(conn) = conns.get_mut(key) else {
            return Ok(0);
        };
        if conn.find_sub(pattern).is_some() {
            return Ok(conn.subs().len());
        }
        if conn.subs().len() >= self.settings.max_subscriptions {
            return Err(Refusal::Limit(format!(
                "subscription limit of {} per connection reached",
                self.settings.max_subscriptions
            )));
        }
        self.add(conns, key, pattern, wildcard);
        let count = conns.get(key).map_or(0, |c| c.subs().len());
        let effects = self.fed.local_subscribed(pattern);
        self.apply_effects(conns, turn, effects);
        Ok(count)
    }

    /// A client unsubscribes from exactly `pattern`. Returns its subscription count;
    /// a pattern it does not hold is not an error.
    pub fn unsubscribe(
        &mut self,
        conns: &mut Conns,
        turn: &mut Turn,
        key: ConnKey,
        pattern: &str,
    ) -> Result<usize, Refusal> {
        validate_pattern(pattern).map_err(|e| Refusal::BadChannel(e.to_string()))?;
        if self.remove(conns, key, pattern) {
            let effects = self.fed.local_unsubscribed(pattern);
            self.apply_effects(conns, turn, effects);
        }
        Ok(conns.get(key).map_or(0, |c| c.subs().len()))
    }

    /// Removes every subscription of a connection that is closing or half-closed: a
    /// client's patterns lose a local subscriber; a link's interest is withdrawn.
    pub fn drop_subscriptions(&mut self, conns: &mut Conns, turn: &mut Turn, key: ConnKey) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let subs = conn.take_subs();
        let is_link = conn.is_link();
        for sub in &subs {
            self.router.remove(
                &sub.pattern,
                sub.wildcard,
                SubRef {
                    conn: key,
                    sid: sub.sid,
                },
            );
        }
        if is_link {
            if self.fed.is_link(key) {
                tracing::info!(peer = ?conn.name(), "link closed");
            }
            let effects = self.fed.link_down(key);
            self.apply_effects(conns, turn, effects);
        } else {
            for sub in &subs {
                let effects = self.fed.local_unsubscribed(&sub.pattern);
                self.apply_effects(conns, turn, effects);
            }
        }
    }

    /// Carries out what the interest table decided: a link's router subscriptions
    /// change here, and announcements are encoded by the link codec and queued.
    pub fn apply_effects(&mut self, conns: &mut Conns, turn: &mut Turn, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Subscribe(link, pattern) => {
                    let wildcard = validate_pattern(&pattern).unwrap_or(false);
                    if conns
                        .get(link)
                        .is_some_and(|c| c.find_sub(&pattern).is_none())
                    {
                        self.add(conns, link, &pattern, wildcard);
                    }
                }
                Effect::Unsubscribe(link, pattern) => {
                    self.remove(conns, link, &pattern);
                }
                Effect::Announce { link, .. } | Effect::Withdraw { link, .. } => {
                    self.reply.clear();
                    codec::link::encode_effect(&effect, &mut self.reply);
                    if self.settings.verbose && !self.reply.is_empty() {
                        let shown = &self.reply[..self.reply.len() - 1];
                        tracing::debug!(frame = %String::from_utf8_lossy(shown), "link send");
                    }
                    self.queue_reply(conns, turn, link);
                }
            }
        }
    }

    /// Adds `pattern` to a connection's list and the router (the caller checked it is
    /// new to the connection).
    fn add(&mut self, conns: &mut Conns, key: ConnKey, pattern: &str, wildcard: bool) {
        if let Some(conn) = conns.get_mut(key) {
            let sid = conn.add_sub(pattern, wildcard).sid;
            self.router
                .insert(pattern, wildcard, SubRef { conn: key, sid });
        }
    }

    /// Removes exactly `pattern` from a connection's list and the router; returns
    /// whether it was held.
    fn remove(&mut self, conns: &mut Conns, key: ConnKey, pattern: &str) -> bool {
        let Some(sub) = conns.get_mut(key).and_then(|c| c.remove_sub(pattern)) else {
            return false;
        };
        self.router.remove(
            &sub.pattern,
            sub.wildcard,
            SubRef {
                conn: key,
                sid: sub.sid,
            },
        );
        true
    }
}
