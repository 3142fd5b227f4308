//! Which gateways serve which room: what lets `msg` push a room's messages only to the gateways
//! with viewers there, with no store round trip per message.
//!
//! Fed two ways: online events from the bus (every `msg` instance sees all of them), applied at
//! once, so a gateway that just got its first viewer in a room is pushed to right away; and
//! snapshots from the presence store (the gateways with users in the room), taken when a room
//! gets its first message and then every few seconds while it has chat. Each event or snapshot
//! that names a gateway confirms it; a gateway unconfirmed for the *settle* window leaves the
//! room. So the store lagging behind events (a new viewer counts at its gateway's next beat),
//! or coming back empty for a moment (a Redis restart, until the gateways write their part
//! again), never stops the pushes.
//!
//! Missing a gateway costs that gateway a repair from the chat log (it notices the gap, or
//! checks every second), never a lost message; a gateway listed in excess only receives pushes
//! it drops. So this view needs to be good, not perfect.
//!
//! Must not: do I/O (the caller takes snapshots) or hold more than the rooms with recent chat
//! and the recent events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Room {
    /// Gateway → when an event or a snapshot last named it.
    gateways: HashMap<Arc<str>, Instant>,
    synced_at: Option<Instant>,
    last_chat: Option<Instant>,
}

impl Room {
    fn confirm(&mut self, gateway: &str, now: Instant) {
        match self.gateways.get_mut(gateway) {
            Some(t) => *t = now,
            None => {
                self.gateways.insert(Arc::from(gateway), now);
            }
        }
    }
}

/// Rooms → gateways. Not thread-safe itself; the owner wraps it in a mutex.
pub struct View {
    rooms: HashMap<i64, Room>,
    settle: Duration,
}

impl View {
    pub fn new(settle: Duration) -> Self {
        View {
            rooms: HashMap::new(),
            settle,
        }
    }

    /// A connection on `gateway` joined `room`.
    pub fn online(&mut self, room: i64, gateway: &str, now: Instant) {
        self.rooms.entry(room).or_default().confirm(gateway, now);
    }

    /// True when the room has never been loaded from the store (or was forgotten).
    pub fn needs_snapshot(&self, room: i64) -> bool {
        self.rooms.get(&room).is_none_or(|r| r.synced_at.is_none())
    }

    /// The gateways the store says serve the room, read at `now`.
    pub fn merge_snapshot(&mut self, room: i64, gateways: Vec<String>, now: Instant) {
        let settle = self.settle;
        let r = self.rooms.entry(room).or_default();
        for g in &gateways {
            r.confirm(g, now);
        }
        r.gateways.retain(|_, t| *t + settle >= now);
        r.synced_at = Some(now);
    }

    /// Marks a chat message in the room (keeps it in the resync set).
    pub fn touch_chat(&mut self, room: i64, now: Instant) {
        self.rooms.entry(room).or_default().last_chat = Some(now);
    }

    /// The gateways to push the room's messages to, sorted.
    pub fn gateways(&self, room: i64) -> Vec<Arc<str>> {
        let Some(r) = self.rooms.get(&room) else {
            return Vec::new();
        };
        let mut v: Vec<Arc<str>> = r.gateways.keys().cloned().collect();
        v.sort();
        v
    }

    /// Rooms with a chat message within `active`, to resync now. Rooms idle longer lose their
    /// snapshot (loaded again on their next message); rooms with nothing recent are forgotten.
    pub fn housekeep(&mut self, active: Duration, now: Instant) -> Vec<i64> {
        let settle = self.settle;
        let mut due = Vec::new();
        self.rooms.retain(|id, r| {
            let chatting = r.last_chat.is_some_and(|t| t + active >= now);
            if chatting {
                due.push(*id);
            } else {
                r.synced_at = None;
                r.gateways.retain(|_, t| *t + settle >= now);
            }
            chatting || !r.gateways.is_empty()
        });
        due.sort_unstable();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Vec<Arc<str>>) -> Vec<String> {
        v.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn events_count_at_once_and_outlive_a_lagging_snapshot() {
        let mut v = View::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(v.needs_snapshot(1));
        v.online(1, "b", t0);
        assert_eq!(
            names(v.gateways(1)),
            ["b"],
            "an event counts before any snapshot"
        );
        // The store has not seen b yet.
        v.merge_snapshot(1, vec!["a".into()], t0 + Duration::from_secs(1));
        assert!(!v.needs_snapshot(1));
        assert_eq!(names(v.gateways(1)), ["a", "b"]);
        // An empty snapshot (a store that lost its data for a moment) removes nobody at once.
        v.merge_snapshot(1, vec![], t0 + Duration::from_secs(2));
        assert_eq!(names(v.gateways(1)), ["a", "b"]);
        // Unconfirmed for longer than the settle window, a gateway leaves the room.
        v.merge_snapshot(1, vec!["c".into()], t0 + Duration::from_secs(60));
        assert_eq!(names(v.gateways(1)), ["c"]);
    }

    #[test]
    fn housekeeping_forgets_idle_rooms() {
        let mut v = View::new(Duration::from_secs(1));
        let t0 = Instant::now();
        v.touch_chat(7, t0);
        v.merge_snapshot(7, vec!["a".into()], t0);
        assert_eq!(v.housekeep(Duration::from_secs(10), t0), vec![7]);
        let later = t0 + Duration::from_secs(30);
        assert!(v.housekeep(Duration::from_secs(10), later).is_empty());
        assert!(v.needs_snapshot(7));
        assert!(v.gateways(7).is_empty());
        assert!(v.rooms.is_empty(), "idle room forgotten");
    }
}
