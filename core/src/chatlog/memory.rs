//! In-process chat log: the embedded twin of [`super::RedisChatLog`], one mutex-guarded stream
//! per room. Bounded like Redis: `max_len` entries per room, entries older than `max_age` trimmed,
//! a room's epoch forgotten `meta_ttl` after its last append (checked lazily, and by [`sweep`]).
//!
//! [`sweep`]: MemoryChatLog::sweep

use super::{ms, Appended, ChatLog, Entry, LogConfig, LogResult, NewEntry, Position, Slice};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

/// The embedded chat log.
pub struct MemoryChatLog {
    cfg: LogConfig,
    rooms: Mutex<HashMap<i64, RoomLog>>,
}

struct RoomLog {
    epoch: String,
    top: u64,
    first: u64,
    entries: VecDeque<Entry>,
    /// msg id → offset, for the entries kept and the removed ones not yet past `first` (so a
    /// recalled message delivered again by the bus is not appended anew).
    ids: HashMap<String, u64>,
    /// Epoch ms of the last append (or of the epoch's start).
    touched_ms: i64,
}

impl RoomLog {
    fn new(now_ms: i64) -> Self {
        RoomLog {
            epoch: crate::ids::random_hex(4),
            top: 0,
            first: 1,
            entries: VecDeque::new(),
            ids: HashMap::new(),
            touched_ms: now_ms,
        }
    }

    /// Trims by length and age; returns how many entries went. Keeps `first` as the Redis
    /// adapter does: the oldest entry left after a trim, or `top + 1` when nothing is left.
    fn trim(&mut self, cfg: &LogConfig, now_ms: i64) -> usize {
        let cutoff = now_ms - ms(cfg.max_age);
        let mut n = 0;
        while self.entries.len() > cfg.max_len
            || self.entries.front().is_some_and(|e| e.at_ms < cutoff)
        {
            self.entries.pop_front();
            n += 1;
        }
        let oldest = match self.entries.front() {
            None if self.top > 0 => Some(self.top + 1),
            Some(e) if n > 0 => Some(e.offset),
            _ => None,
        };
        if let Some(oldest) = oldest.filter(|o| *o > self.first) {
            self.first = oldest;
            self.ids.retain(|_, off| *off >= oldest);
        }
        n
    }

    fn slice(&self, entries: Vec<Entry>, more: bool) -> Slice {
        Slice {
            epoch: self.epoch.clone(),
            top: self.top,
            first: self.first,
            entries,
            more,
        }
    }
}

impl MemoryChatLog {
    pub fn new(cfg: LogConfig) -> Self {
        MemoryChatLog {
            cfg,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// The room's log, dropping one whose meta expired; `create` starts a new epoch if absent.
    fn with_room<T>(
        &self,
        room: i64,
        now_ms: i64,
        create: bool,
        f: impl FnOnce(&mut RoomLog) -> T,
    ) -> Option<T> {
        let mut rooms = self.rooms.lock();
        if rooms
            .get(&room)
            .is_some_and(|r| r.touched_ms + ms(self.cfg.meta_ttl) <= now_ms)
        {
            rooms.remove(&room);
        }
        if create {
            let r = rooms.entry(room).or_insert_with(|| RoomLog::new(now_ms));
            Some(f(r))
        } else {
            rooms.get_mut(&room).map(f)
        }
    }

    /// Forgets rooms whose meta expired (their stream and epoch), as Redis expires keys.
    pub fn sweep(&self, now_ms: i64) {
        let ttl = ms(self.cfg.meta_ttl);
        self.rooms.lock().retain(|_, r| r.touched_ms + ttl > now_ms);
    }
}

impl Default for MemoryChatLog {
    fn default() -> Self {
        Self::new(LogConfig::default())
    }
}

#[async_trait]
impl ChatLog for MemoryChatLog {
    fn config(&self) -> &LogConfig {
        &self.cfg
    }

    async fn append(&self, room: i64, e: NewEntry) -> LogResult<Appended> {
        let now = e.at_ms;
        let cfg = &self.cfg;
        Ok(self
            .with_room(room, now, true, |r| {
                r.trim(cfg, now);
                if let Some(&offset) = r.ids.get(&e.msg_id) {
                    return Appended {
                        pos: Position {
                            epoch: r.epoch.clone(),
                            offset,
                        },
                        fresh: false,
                    };
                }
                r.top += 1;
                r.touched_ms = now;
                r.ids.insert(e.msg_id.clone(), r.top);
                r.entries.push_back(Entry {
                    offset: r.top,
                    msg_id: e.msg_id,
                    kind: e.kind,
                    at_ms: e.at_ms,
                    payload: e.payload,
                });
                r.trim(cfg, now);
                Appended {
                    pos: Position {
                        epoch: r.epoch.clone(),
                        offset: r.top,
                    },
                    fresh: true,
                }
            })
            .expect("created"))
    }

    async fn read_after(
        &self,
        room: i64,
        after: u64,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice> {
        let cfg = &self.cfg;
        Ok(self
            .with_room(room, now_ms, true, |r| {
                r.trim(cfg, now_ms);
                let mut it = r.entries.iter().filter(|e| e.offset > after);
                let entries: Vec<Entry> = it.by_ref().take(limit).cloned().collect();
                let more = it.next().is_some();
                r.slice(entries, more)
            })
            .expect("created"))
    }

    async fn history(
        &self,
        room: i64,
        kind: i32,
        before: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice> {
        let cfg = &self.cfg;
        Ok(self
            .with_room(room, now_ms, true, |r| {
                r.trim(cfg, now_ms);
                let before = before.unwrap_or(u64::MAX);
                let mut it = r
                    .entries
                    .iter()
                    .rev()
                    .filter(|e| e.offset < before && e.kind == kind);
                let mut entries: Vec<Entry> = it.by_ref().take(limit).cloned().collect();
                let more = it.next().is_some();
                entries.reverse();
                r.slice(entries, more)
            })
            .expect("created"))
    }

    async fn top(&self, room: i64, now_ms: i64) -> LogResult<Position> {
        Ok(self
            .with_room(room, now_ms, true, |r| Position {
                epoch: r.epoch.clone(),
                offset: r.top,
            })
            .expect("created"))
    }

    async fn tops(&self, rooms: &[i64]) -> LogResult<Vec<Option<Position>>> {
        let now = crate::time::now_ms();
        Ok(rooms
            .iter()
            .map(|&room| {
                self.with_room(room, now, false, |r| Position {
                    epoch: r.epoch.clone(),
                    offset: r.top,
                })
            })
            .collect())
    }

    async fn remove(&self, room: i64, msg_ids: &[String]) -> LogResult<Vec<u64>> {
        let now = crate::time::now_ms();
        Ok(self
            .with_room(room, now, false, |r| {
                let mut gone = Vec::new();
                for id in msg_ids {
                    if let Some(&offset) = r.ids.get(id) {
                        let before = r.entries.len();
                        r.entries.retain(|e| e.offset != offset);
                        if r.entries.len() < before {
                            gone.push(offset);
                        }
                    }
                }
                gone.sort_unstable();
                gone
            })
            .unwrap_or_default())
    }

    async fn trim(&self, room: i64, now_ms: i64) -> LogResult<usize> {
        let cfg = &self.cfg;
        Ok(self
            .with_room(room, now_ms, false, |r| r.trim(cfg, now_ms))
            .unwrap_or(0))
    }
}
