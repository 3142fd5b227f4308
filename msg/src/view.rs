//! The local view of who is in which room and on which gateway: what lets `msg` fan a chat
//! message out with no cache round trip per viewer.
//!
//! Fed two ways: presence events from the bus (every `msg` instance sees all of them), applied at
//! once; and snapshots from the cache (the room's member set plus each member's gateway
//! binding), taken when a room first gets a chat message and then every few seconds while it is
//! active. A snapshot is merged so that an event applied shortly before or during the snapshot
//! (within the *settle* window) wins over it: the cache is written by `living` from the same
//! events and may lag behind.
//!
//! Must not: do I/O (the caller takes snapshots) or hold more than the online users and the
//! rooms that recently had chat.

use livehouse_core::events::PresenceEvent;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Room {
    /// user → gateway id.
    members: HashMap<i64, Arc<str>>,
    /// user → (when an event about them was applied, its `at_ms`), for the merge and for order.
    recent: HashMap<i64, (Instant, i64)>,
    synced_at: Option<Instant>,
    last_chat: Option<Instant>,
}

/// Members → gateway per room. Not thread-safe itself; the owner wraps it in a mutex.
pub struct View {
    rooms: HashMap<i64, Room>,
    gateways: HashMap<String, Arc<str>>,
    settle: Duration,
}

/// Whether a presence event adds or removes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Online,
    Offline,
}

impl View {
    pub fn new(settle: Duration) -> Self {
        View {
            rooms: HashMap::new(),
            gateways: HashMap::new(),
            settle,
        }
    }

    fn intern(&mut self, gateway: &str) -> Arc<str> {
        if let Some(g) = self.gateways.get(gateway) {
            return g.clone();
        }
        let g: Arc<str> = Arc::from(gateway);
        self.gateways.insert(gateway.to_string(), g.clone());
        g
    }

    /// Applies a presence event. An event older (by `at_ms`) than the last one applied for the
    /// same user and room is ignored (online and offline travel on different topics, so they
    /// can arrive out of order); on a tie, online wins. An offline event removes the user only
    /// when they are still on the gateway it names (a reconnect elsewhere stays).
    pub fn apply(&mut self, kind: Presence, ev: &PresenceEvent, now: Instant) {
        let gateway = self.intern(&ev.gateway_id);
        let room = self.rooms.entry(ev.room_id).or_default();
        if let Some(&(_, last)) = room.recent.get(&ev.user_id) {
            if ev.at_ms < last || (ev.at_ms == last && kind == Presence::Offline) {
                return;
            }
        }
        room.recent.insert(ev.user_id, (now, ev.at_ms));
        match kind {
            Presence::Online => {
                room.members.insert(ev.user_id, gateway);
            }
            Presence::Offline => {
                if room
                    .members
                    .get(&ev.user_id)
                    .is_some_and(|g| **g == *ev.gateway_id)
                {
                    room.members.remove(&ev.user_id);
                }
            }
        }
    }

    /// True when the room has never been loaded from the cache (or was evicted).
    pub fn needs_snapshot(&self, room_id: i64) -> bool {
        self.rooms
            .get(&room_id)
            .is_none_or(|r| r.synced_at.is_none())
    }

    /// Merges a snapshot of the room read from the cache, started at `started`: users with an
    /// event applied after `started - settle` keep the state the events gave them.
    pub fn merge_snapshot(
        &mut self,
        room_id: i64,
        snapshot: Vec<(i64, String)>,
        started: Instant,
        now: Instant,
    ) {
        let snap: Vec<(i64, Arc<str>)> = snapshot
            .into_iter()
            .map(|(u, g)| (u, self.intern(&g)))
            .collect();
        let settle = self.settle;
        let room = self.rooms.entry(room_id).or_default();
        let fresh = |t: Instant| t + settle >= started;
        let mut members: HashMap<i64, Arc<str>> = snap
            .into_iter()
            .filter(|(u, _)| !room.recent.get(u).is_some_and(|(t, _)| fresh(*t)))
            .collect();
        for (u, (t, _)) in &room.recent {
            if fresh(*t) {
                if let Some(g) = room.members.get(u) {
                    members.insert(*u, g.clone());
                }
            }
        }
        room.members = members;
        room.recent.retain(|_, (t, _)| *t + settle >= now);
        room.synced_at = Some(now);
    }

    /// Marks a chat message in the room (keeps it in the resync set).
    pub fn touch_chat(&mut self, room_id: i64, now: Instant) {
        self.rooms.entry(room_id).or_default().last_chat = Some(now);
    }

    /// Receivers of a message in the room grouped by gateway, without `sender`.
    pub fn targets(&self, room_id: i64, sender: i64) -> Vec<(Arc<str>, Vec<i64>)> {
        let Some(room) = self.rooms.get(&room_id) else {
            return Vec::new();
        };
        let mut by_gw: HashMap<Arc<str>, Vec<i64>> = HashMap::new();
        for (u, g) in &room.members {
            if *u != sender {
                by_gw.entry(g.clone()).or_default().push(*u);
            }
        }
        let mut out: Vec<_> = by_gw.into_iter().collect();
        for (_, v) in &mut out {
            v.sort_unstable();
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Rooms with a chat message within `active`, to resync now. Rooms idle longer lose their
    /// snapshot (loaded again on their next message); rooms with no members, no recent events
    /// and no recent chat are forgotten.
    pub fn housekeep(&mut self, active: Duration, now: Instant) -> Vec<i64> {
        let settle = self.settle;
        let mut due = Vec::new();
        self.rooms.retain(|id, r| {
            r.recent.retain(|_, (t, _)| *t + settle >= now);
            let chatting = r.last_chat.is_some_and(|t| t + active >= now);
            if chatting {
                due.push(*id);
            } else {
                r.synced_at = None;
            }
            chatting || !r.members.is_empty() || !r.recent.is_empty()
        });
        let live: std::collections::HashSet<&str> = self
            .rooms
            .values()
            .flat_map(|r| r.members.values().map(|g| &**g))
            .collect();
        self.gateways.retain(|k, _| live.contains(k.as_str()));
        due.sort_unstable();
        due
    }

    #[cfg(test)]
    pub fn members(&self, room_id: i64) -> Vec<(i64, String)> {
        let mut v: Vec<_> = self
            .rooms
            .get(&room_id)
            .map(|r| r.members.iter().map(|(u, g)| (*u, g.to_string())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: i64, gw: &str, at: i64) -> PresenceEvent {
        PresenceEvent {
            user_id: user,
            room_id: 1,
            gateway_id: gw.into(),
            at_ms: at,
        }
    }

    #[test]
    fn out_of_order_and_reconnects() {
        let mut v = View::new(Duration::from_secs(5));
        let now = Instant::now();
        v.apply(Presence::Online, &ev(1, "a", 10), now);
        v.apply(Presence::Offline, &ev(1, "a", 5), now); // older: ignored
        assert_eq!(v.members(1), vec![(1, "a".into())]);
        v.apply(Presence::Online, &ev(1, "b", 20), now); // reconnect elsewhere
        v.apply(Presence::Offline, &ev(1, "a", 25), now); // the old session ends
        assert_eq!(v.members(1), vec![(1, "b".into())]);
        v.apply(Presence::Offline, &ev(1, "b", 30), now);
        assert!(v.members(1).is_empty());
    }

    #[test]
    fn snapshot_merge_prefers_recent_events() {
        let mut v = View::new(Duration::from_secs(5));
        let t0 = Instant::now();
        v.apply(Presence::Online, &ev(1, "a", 10), t0); // cache may not have it yet
        v.apply(Presence::Offline, &ev(2, "a", 10), t0); // cache may still have it
        let later = t0 + Duration::from_secs(1);
        v.merge_snapshot(1, vec![(2, "a".into()), (3, "b".into())], later, later);
        assert_eq!(v.members(1), vec![(1, "a".into()), (3, "b".into())]);
        // Much later the cache is the truth again.
        let much_later = t0 + Duration::from_secs(60);
        v.merge_snapshot(1, vec![(2, "a".into())], much_later, much_later);
        assert_eq!(v.members(1), vec![(2, "a".into())]);
    }

    #[test]
    fn targets_group_by_gateway_without_sender() {
        let mut v = View::new(Duration::from_secs(5));
        let now = Instant::now();
        for (u, g) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c")] {
            v.apply(Presence::Online, &ev(u, g, 1), now);
        }
        let t = v.targets(1, 5);
        let t: Vec<(String, Vec<i64>)> = t.into_iter().map(|(g, u)| (g.to_string(), u)).collect();
        assert_eq!(t, vec![("a".into(), vec![1, 2]), ("b".into(), vec![3, 4])]);
    }

    #[test]
    fn housekeeping_forgets_idle_rooms() {
        let mut v = View::new(Duration::from_secs(1));
        let t0 = Instant::now();
        v.touch_chat(7, t0);
        v.merge_snapshot(7, vec![], t0, t0);
        assert_eq!(v.housekeep(Duration::from_secs(10), t0), vec![7]);
        assert!(!v.needs_snapshot(7));
        let later = t0 + Duration::from_secs(30);
        assert!(v.housekeep(Duration::from_secs(10), later).is_empty());
        assert!(v.needs_snapshot(7));
        assert!(v.rooms.is_empty(), "empty idle room forgotten");
    }
}
