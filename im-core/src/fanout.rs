//! The fan-out: each room's stream (design §3.1) delivered to every connection of the room on
//! this gateway, in offset order, with no gap and no duplicate, and the seam between a
//! connection's recovery and its live messages.
//!
//! Rooms are spread over a few shard tasks (by room id); a shard owns its rooms outright (no
//! locks): each room's connections, its position (the epoch and the last offset delivered here)
//! and its most recent messages, encoded once in both wire forms. A shard reads, in order:
//! - **pushes** (room batches from `msg`): entries at or below the position are dropped
//!   (duplicates); entries above it are delivered; a gap before them (a push that never came, or
//!   a room `msg` did not know this gateway serves yet) is filled from the chat log first;
//! - **joins** of logged-in connections: the shard sets the connection's starting point and,
//!   for a recovery, queues the missed messages (from its recent messages, else the chat log) on
//!   the connection *before* registering it, so every later delivery follows them: that is the
//!   seam. A recovery is complete or not made at all;
//! - a **timer**: every `repair_interval`, one chat-log round trip for the positions of all its
//!   rooms, filling whatever no push brought; and the rooms' closed connections are dropped and
//!   their user counts (for the presence beat) refreshed.
//!
//! With `fanout_linger > 0`, a shard delivers at most once per linger window: all the new
//! messages of a room go out as one shared frame string per connection.
//!
//! Must not: publish anything, block on a connection (a full outbox kicks it), or keep a room
//! with no connection here.

use crate::conns::{ConnHandle, Enqueue, IdMap, Outgoing, Prepared};
use crate::protocol::{self, code, Delivery, Wire, BIZ_RECALL};
use crate::stats::Counters;
use livehouse_core::chatlog::{ChatLog, Entry};
use livehouse_core::events::{ChatEvent, RoomBatch, StreamEntry};
use livehouse_core::time::now_ms;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands queued per shard.
const SHARD_QUEUE: usize = 1024;
/// Most entries read from the chat log in one call.
const READ_LIMIT: usize = 512;

/// A logged-in connection entering its room.
pub(crate) struct Join {
    pub room: i64,
    pub user: i64,
    pub conn: Arc<ConnHandle>,
    /// The client's last position, to recover what it missed.
    pub recover: Option<(String, u64)>,
    pub reply: oneshot::Sender<Joined>,
}

/// Where a joined connection starts.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub epoch: String,
    pub offset: u64,
    /// For a join that asked to recover: whether the missed messages were queued.
    pub recovered: Option<bool>,
}

enum Cmd {
    Push(Vec<RoomBatch>),
    Join(Join),
}

/// The users each room has on this gateway, for the presence beat.
#[derive(Default)]
pub(crate) struct RoomCounts {
    inner: Mutex<(IdMap<i64, u64>, HashSet<i64>)>,
}

impl RoomCounts {
    fn set(&self, room: i64, n: u64) {
        let mut g = self.inner.lock();
        let changed = if n == 0 {
            g.0.remove(&room).is_some()
        } else {
            g.0.insert(room, n) != Some(n)
        };
        if changed {
            g.1.insert(room);
        }
    }

    /// Rooms whose count changed since the last call, with their count (0: none left).
    pub fn take_changed(&self) -> Vec<(i64, u64)> {
        let mut g = self.inner.lock();
        let dirty: Vec<i64> = g.1.drain().collect();
        dirty
            .into_iter()
            .map(|r| (r, g.0.get(&r).copied().unwrap_or(0)))
            .collect()
    }

    /// Every room with users here.
    pub fn all(&self) -> Vec<(i64, u64)> {
        self.inner.lock().0.iter().map(|(r, n)| (*r, *n)).collect()
    }
}

/// What the shards share.
pub(crate) struct Shared {
    pub gateway_id: String,
    pub log: Arc<dyn ChatLog>,
    pub counters: Arc<Counters>,
    pub room_counts: Arc<RoomCounts>,
    pub linger: Duration,
    pub recent_per_room: usize,
    pub repair_interval: Duration,
    /// Told when this gateway stops serving a room (its rules are dropped).
    pub moderation: Arc<livehouse_moderation::RuleBook>,
}

/// The handle: routes pushes and joins to the shard owning the room.
pub(crate) struct Fanout {
    shards: Vec<mpsc::Sender<Cmd>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the fan-out is closed")]
pub(crate) struct Closed;

impl Fanout {
    /// Starts the shard tasks (they end when the handle is dropped).
    pub fn start(shared: Shared) -> Fanout {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 16);
        let shared = Arc::new(shared);
        let shards = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                let shard = Shard {
                    shared: shared.clone(),
                    rooms: IdMap::default(),
                };
                tokio::spawn(shard.run(rx));
                tx
            })
            .collect();
        Fanout { shards }
    }

    fn shard_of(&self, room: i64) -> usize {
        (room as u64 % self.shards.len() as u64) as usize
    }

    fn split(&self, batches: Vec<RoomBatch>) -> Vec<Vec<RoomBatch>> {
        let mut per: Vec<Vec<RoomBatch>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for b in batches {
            per[self.shard_of(b.room_id)].push(b);
        }
        per
    }

    /// Queues room batches, waiting while a shard's queue is full.
    pub async fn push(&self, batches: Vec<RoomBatch>) -> Result<(), Closed> {
        for (i, part) in self.split(batches).into_iter().enumerate() {
            if !part.is_empty() {
                self.shards[i]
                    .send(Cmd::Push(part))
                    .await
                    .map_err(|_| Closed)?;
            }
        }
        Ok(())
    }

    /// Queues room batches without waiting; false when a shard's queue was full (those batches
    /// are not queued: the sender should retry, or the shard's repair will fetch them).
    pub fn try_push(&self, batches: Vec<RoomBatch>) -> bool {
        let mut all = true;
        for (i, part) in self.split(batches).into_iter().enumerate() {
            if !part.is_empty() && self.shards[i].try_send(Cmd::Push(part)).is_err() {
                all = false;
            }
        }
        all
    }

    /// Enters a connection into its room; answers where it starts.
    pub async fn join(&self, j: Join) -> Result<(), Closed> {
        let i = self.shard_of(j.room);
        self.shards[i].send(Cmd::Join(j)).await.map_err(|_| Closed)
    }
}

/// A room as its shard keeps it.
struct Room {
    epoch: Arc<str>,
    /// Last offset delivered to the room's connections here.
    pos: u64,
    /// (user, connection).
    conns: Vec<(i64, Arc<ConnHandle>)>,
    /// Connections per user.
    users: IdMap<i64, u32>,
    /// The latest delivered messages, oldest first.
    recent: VecDeque<Arc<Prepared>>,
    /// Every message after this offset (and up to `pos`) is in `recent`, or was recalled.
    recent_base: u64,
}

impl Room {
    fn new(epoch: &str, pos: u64) -> Self {
        Room {
            epoch: Arc::from(epoch),
            pos,
            conns: Vec::new(),
            users: IdMap::default(),
            recent: VecDeque::new(),
            recent_base: pos,
        }
    }

    /// A new epoch (the log lost its state): everything starts over from offset 0.
    fn reset(&mut self, epoch: &str) {
        self.epoch = Arc::from(epoch);
        self.pos = 0;
        self.recent.clear();
        self.recent_base = 0;
    }
}

struct Shard {
    shared: Arc<Shared>,
    rooms: IdMap<i64, Room>,
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let every = self.shared.repair_interval.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let linger = self.shared.linger;
        let mut pending: Vec<RoomBatch> = Vec::new();
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut last_flush = tokio::time::Instant::now() - linger;
        loop {
            let due = async {
                match flush_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Push(batches)) => {
                        if linger.is_zero() {
                            self.deliver_all(batches).await;
                            continue;
                        }
                        pending.extend(batches);
                        if flush_at.is_none() {
                            let now = tokio::time::Instant::now();
                            flush_at = Some((last_flush + linger).max(now));
                        }
                    }
                    Some(Cmd::Join(j)) => {
                        // What is pending for the room goes out first: the join's starting
                        // point must follow it.
                        if !pending.is_empty() {
                            self.deliver_all(std::mem::take(&mut pending)).await;
                            flush_at = None;
                            last_flush = tokio::time::Instant::now();
                        }
                        self.join(j).await;
                    }
                },
                _ = due => {
                    flush_at = None;
                    last_flush = tokio::time::Instant::now();
                    self.deliver_all(std::mem::take(&mut pending)).await;
                }
                _ = tick.tick() => {
                    if !pending.is_empty() {
                        flush_at = None;
                        last_flush = tokio::time::Instant::now();
                        self.deliver_all(std::mem::take(&mut pending)).await;
                    }
                    self.housekeep().await;
                }
            }
        }
    }

    /// Delivers batches, merged per room (one shared frame string per room and flush).
    async fn deliver_all(&mut self, batches: Vec<RoomBatch>) {
        let mut per_room: Vec<(i64, String, Vec<StreamEntry>)> = Vec::new();
        for b in batches {
            match per_room
                .iter_mut()
                .find(|(r, e, _)| *r == b.room_id && *e == b.epoch)
            {
                Some((_, _, entries)) => entries.extend(b.entries),
                None => per_room.push((b.room_id, b.epoch, b.entries)),
            }
        }
        for (room, epoch, mut entries) in per_room {
            entries.sort_by_key(|e| e.offset);
            entries.dedup_by_key(|e| e.offset);
            self.deliver_pushed(room, &epoch, entries).await;
        }
    }

    async fn deliver_pushed(&mut self, room: i64, epoch: &str, entries: Vec<StreamEntry>) {
        let Some(r) = self.rooms.get(&room) else {
            return; // nobody in the room here
        };
        let first = entries.first().map_or(0, |e| e.offset);
        if *r.epoch != *epoch || first > r.pos + 1 {
            // A gap, or a stream that started over: the log has everything up to the top.
            self.catch_up(room).await;
            return;
        }
        let pos = r.pos;
        let prepared: Vec<Arc<Prepared>> = entries
            .iter()
            .filter(|e| e.offset > pos)
            .map(|e| Arc::new(self.prepare(&e.msg, epoch, e.offset)))
            .collect();
        self.deliver(room, prepared);
    }

    /// Brings the room up to the chat log's top, delivering what it had not delivered yet.
    async fn catch_up(&mut self, room: i64) {
        let now = now_ms();
        loop {
            let Some(r) = self.rooms.get(&room) else {
                return;
            };
            let after = r.pos;
            let slice = match self
                .shared
                .log
                .read_after(room, after, READ_LIMIT, now)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(room, error = %e, "chat log read failed; repair retried later");
                    return;
                }
            };
            let Some(r) = self.rooms.get_mut(&room) else {
                return;
            };
            if *r.epoch != *slice.epoch {
                tracing::info!(room, old = %r.epoch, new = %slice.epoch, "room stream restarted");
                r.reset(&slice.epoch);
                continue;
            }
            if after + 1 < slice.first {
                let lost = slice.first - after - 1;
                Counters::add(&self.shared.counters.lost, lost);
                tracing::warn!(
                    room,
                    lost,
                    "messages trimmed from the chat log before delivery"
                );
                r.pos = slice.first - 1;
                r.recent.clear();
                r.recent_base = r.pos;
            }
            let epoch = slice.epoch.clone();
            let prepared: Vec<Arc<Prepared>> = slice
                .entries
                .iter()
                .filter_map(|e| self.prepare_entry(e, &epoch))
                .map(Arc::new)
                .collect();
            Counters::add(&self.shared.counters.repaired, prepared.len() as u64);
            self.deliver(room, prepared);
            let Some(r) = self.rooms.get_mut(&room) else {
                return;
            };
            // Past unreadable entries too, so a bad one cannot stall the room.
            if let Some(last) = slice.entries.last() {
                r.pos = r.pos.max(last.offset);
            }
            if !slice.more {
                // Recalled messages at the tail leave the top above the last entry.
                r.pos = r.pos.max(slice.top);
                return;
            }
        }
    }

    /// Hands messages (above the room's position, ascending) to every connection of the room,
    /// but each to the connection it came from; advances the position; keeps them as recent.
    fn deliver(&mut self, room: i64, msgs: Vec<Arc<Prepared>>) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let msgs: Vec<Arc<Prepared>> = msgs.into_iter().filter(|m| m.offset > r.pos).collect();
        let Some(last) = msgs.last() else {
            return;
        };
        r.pos = last.offset;
        let origins: HashSet<u64> = msgs.iter().map(|m| m.origin).filter(|o| *o != 0).collect();
        let shared = Arc::new(Outgoing::of(msgs.clone()));
        let mut delivered = 0u64;
        let mut closed = false;
        for (_, c) in &r.conns {
            let og = if origins.contains(&c.id) {
                let mine: Vec<Arc<Prepared>> =
                    msgs.iter().filter(|m| m.origin != c.id).cloned().collect();
                if mine.is_empty() {
                    continue;
                }
                Arc::new(Outgoing::of(mine))
            } else {
                shared.clone()
            };
            let n = og.msgs.len() as u64;
            match c.enqueue(og) {
                Enqueue::Queued => delivered += n,
                Enqueue::Overflow => Counters::add(&self.shared.counters.slow_kicked, 1),
                Enqueue::Closed => closed = true,
            }
        }
        Counters::add(&self.shared.counters.delivered, delivered);
        for m in &msgs {
            if !m.recalls.is_empty() {
                // A later recovery must not bring recalled messages back.
                r.recent.retain(|old| !m.recalls.contains(&old.msg_id));
            }
        }
        r.recent.extend(msgs);
        let cap = self.shared.recent_per_room;
        while r.recent.len() > cap {
            let old = r.recent.pop_front().expect("over the cap");
            r.recent_base = old.offset;
        }
        if cap == 0 {
            r.recent_base = r.pos;
        }
        if closed {
            self.prune(room);
        }
    }

    async fn join(&mut self, j: Join) {
        let now = now_ms();
        if !self.rooms.contains_key(&j.room) {
            match self.shared.log.top(j.room, now).await {
                Ok(top) => {
                    self.rooms.insert(j.room, Room::new(&top.epoch, top.offset));
                }
                Err(e) => {
                    tracing::warn!(room = j.room, error = %e, "chat log unavailable at join");
                    // Without the log the room starts where its first push will put it.
                    self.rooms.insert(j.room, Room::new("", 0));
                }
            }
        }
        let mut recovered = None;
        let mut replay: Vec<Arc<Prepared>> = Vec::new();
        if let Some((epoch, offset)) = &j.recover {
            Counters::add(&self.shared.counters.recover_asked, 1);
            let r = &self.rooms[&j.room];
            if *r.epoch != **epoch || *offset > r.pos {
                // The client may know a newer stream than this gateway delivered so far.
                self.catch_up(j.room).await;
            }
            let ok = self.recovery(j.room, epoch, *offset, &mut replay).await;
            if ok {
                Counters::add(&self.shared.counters.recovered, 1);
            } else {
                replay.clear();
            }
            recovered = Some(ok);
        }
        let r = self.rooms.get_mut(&j.room).expect("made above");
        if !replay.is_empty() {
            let n = replay.len() as u64;
            if j.conn.enqueue(Arc::new(Outgoing::of(replay))) == Enqueue::Queued {
                Counters::add(&self.shared.counters.delivered, n);
            }
        }
        r.conns.push((j.user, j.conn));
        let users = {
            let n = r.users.entry(j.user).or_default();
            *n += 1;
            r.users.len() as u64
        };
        self.shared.room_counts.set(j.room, users);
        let _ = j.reply.send(Joined {
            epoch: r.epoch.to_string(),
            offset: r.pos,
            recovered,
        });
    }

    /// The messages after `offset` of `epoch` up to the room's position, if every one of them
    /// can be had (from the recent ones, else the chat log).
    async fn recovery(
        &mut self,
        room: i64,
        epoch: &str,
        offset: u64,
        out: &mut Vec<Arc<Prepared>>,
    ) -> bool {
        let r = &self.rooms[&room];
        if *r.epoch != *epoch || offset > r.pos {
            return false;
        }
        if offset == r.pos {
            return true;
        }
        if offset >= r.recent_base {
            out.extend(r.recent.iter().filter(|m| m.offset > offset).cloned());
            return true;
        }
        let pos = r.pos;
        let want = (pos - offset) as usize;
        if want > self.shared.log.config().max_len + 1 {
            return false;
        }
        let slice = match self
            .shared
            .log
            .read_after(room, offset, want.min(READ_LIMIT), now_ms())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(room, error = %e, "chat log read failed during a recovery");
                return false;
            }
        };
        if slice.epoch != epoch || offset + 1 < slice.first {
            return false;
        }
        let upto: Vec<&Entry> = slice.entries.iter().filter(|e| e.offset <= pos).collect();
        let reached_pos = !slice.more || upto.last().is_some_and(|e| e.offset == pos);
        if !reached_pos {
            return false;
        }
        out.extend(
            upto.into_iter()
                .filter_map(|e| self.prepare_entry(e, epoch))
                .map(Arc::new),
        );
        true
    }

    /// Drops closed connections; forgets a room nobody is in any more.
    fn prune(&mut self, room: i64) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let before = r.users.len();
        let users = &mut r.users;
        r.conns.retain(|(u, c)| {
            if c.is_closed() {
                if let Some(n) = users.get_mut(u) {
                    *n -= 1;
                    if *n == 0 {
                        users.remove(u);
                    }
                }
                false
            } else {
                true
            }
        });
        let after = r.users.len();
        if r.conns.is_empty() {
            self.rooms.remove(&room);
            self.shared.room_counts.set(room, 0);
            self.shared.moderation.forget(room);
        } else if after != before {
            self.shared.room_counts.set(room, after as u64);
        }
    }

    /// The timer's work: drop closed connections, then fill every room from the chat log where
    /// its top is past the room's position.
    async fn housekeep(&mut self) {
        let rooms: Vec<i64> = self.rooms.keys().copied().collect();
        for room in &rooms {
            self.prune(*room);
        }
        let rooms: Vec<i64> = self.rooms.keys().copied().collect();
        if rooms.is_empty() {
            return;
        }
        let tops = match self.shared.log.tops(&rooms).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "chat log unavailable for the repair check");
                return;
            }
        };
        for (room, top) in rooms.into_iter().zip(tops) {
            let Some(top) = top else { continue };
            let behind = self
                .rooms
                .get(&room)
                .is_some_and(|r| *r.epoch != *top.epoch || r.pos < top.offset);
            if behind {
                self.catch_up(room).await;
            }
        }
    }

    /// A stored entry (its payload is the `ChatEvent`) ready to go out.
    fn prepare_entry(&self, e: &Entry, epoch: &str) -> Option<Prepared> {
        match serde_json::from_slice::<ChatEvent>(&e.payload) {
            Ok(msg) => Some(self.prepare(&msg, epoch, e.offset)),
            Err(err) => {
                tracing::warn!(offset = e.offset, error = %err, "unreadable chat log entry skipped");
                None
            }
        }
    }

    fn prepare(&self, m: &ChatEvent, epoch: &str, offset: u64) -> Prepared {
        let body = Delivery {
            sender: m.sender_id,
            biz_code: m.biz_code,
            data: &m.data,
            msg_id: &m.msg_id,
            room: m.room_id,
            epoch,
            offset,
        }
        .body_json();
        let origin = if m.origin_gateway == self.shared.gateway_id {
            m.origin_conn
        } else {
            0
        };
        let recalls = if m.biz_code == BIZ_RECALL {
            recalled_ids(&m.data)
        } else {
            Box::default()
        };
        Prepared {
            msg_id: m.msg_id.clone().into_boxed_str(),
            offset,
            sent_at_ms: m.sent_at_ms,
            origin,
            recalls,
            ws: protocol::encode(Wire::Ws, code::BIZ, &body),
            tcp: protocol::encode(Wire::Tcp, code::BIZ, &body),
        }
    }
}

/// The message ids a recall's `data` (`{roomId, msgIds}`) names.
fn recalled_ids(data: &str) -> Box<[Box<str>]> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RecallData {
        #[serde(default)]
        msg_ids: Vec<String>,
    }
    serde_json::from_str::<RecallData>(data)
        .map(|d| d.msg_ids.into_iter().map(String::into_boxed_str).collect())
        .unwrap_or_default()
}
