//! The gateway's local index of live sessions and the handle through which other tasks reach one.
//!
//! - [`SessionHandle`]: the part of a session other tasks may touch: its bounded outbox (what the
//!   fan-out hands it), a waker, a kick flag and two deadlines the sweeper reads. Everything else
//!   about a session is owned by its connection task (`session.rs`).
//! - [`Hub`]: every open connection by id (for the sweeper and the session count), and logged-in
//!   sessions by user id (each with its room) plus a per-user chat rate bucket. Sharded
//!   `parking_lot` locks, never held across an `.await`.
//!
//! Must not: do I/O or call the cache/bus; decide protocol replies.

use bytes::Bytes;
use futures::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::protocol::Wire;

const SHARDS: usize = 16;

/// A fast hasher for integer ids (user, session, room ids: authenticated or server-made, so
/// hash flooding is not a concern here). Multiply-rotate, as in rustc's FxHasher.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

/// `HashMap` keyed by integer ids, with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One chat message ready to go out: its id and its encoded frame in both forms.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub msg_id: Box<str>,
    /// When the gateway accepted the message (epoch ms; 0 = unknown).
    pub sent_at_ms: i64,
    pub ws: Bytes,
    pub tcp: Bytes,
}

/// What the fan-out queues on a session: one or more messages, their frames concatenated in both
/// forms (shared by every session that receives exactly these messages).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub ws: Bytes,
    pub tcp: Bytes,
    pub msgs: Vec<Arc<Prepared>>,
}

impl Outgoing {
    pub fn bytes(&self, wire: Wire) -> &Bytes {
        match wire {
            Wire::Ws => &self.ws,
            Wire::Tcp => &self.tcp,
        }
    }
}

/// Why a session is told to end by another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kick {
    /// Another session of the same user logged in to the same room.
    Replaced = 1,
    /// Silent for two heartbeat gaps.
    Idle = 2,
    /// Its outbound queue overflowed.
    SlowReader = 3,
    /// The gateway is closing all sessions.
    Shutdown = 4,
    /// Connected but not logged in within the login deadline.
    LoginTimeout = 5,
}

impl Kick {
    fn from_u8(v: u8) -> Option<Kick> {
        Some(match v {
            1 => Kick::Replaced,
            2 => Kick::Idle,
            3 => Kick::SlowReader,
            4 => Kick::Shutdown,
            5 => Kick::LoginTimeout,
            _ => return None,
        })
    }
}

/// Result of queueing on a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueue {
    Queued,
    /// The outbox was full: the session has been kicked as a slow reader.
    Overflow,
    Closed,
}

#[derive(Default)]
struct Outbox {
    items: VecDeque<Arc<Outgoing>>,
    closed: bool,
}

/// The shared half of a session (see module docs).
pub(crate) struct SessionHandle {
    pub id: u64,
    limit: usize,
    outbox: Mutex<Outbox>,
    waker: AtomicWaker,
    kick: AtomicU8,
    timer_fired: AtomicBool,
    /// Gateway-clock ms when the connection opened (for the login deadline).
    pub opened_at: u64,
    /// Set once the connection has logged in.
    pub logged_in: AtomicBool,
    /// Gateway-clock ms of the last frame received.
    pub last_seen: AtomicU64,
    /// Gateway-clock ms at which the earliest pending ACK times out; 0 = none.
    pub ack_due: AtomicU64,
}

impl SessionHandle {
    pub fn new(id: u64, limit: usize, now: u64) -> Self {
        SessionHandle {
            id,
            limit: limit.max(1),
            outbox: Mutex::new(Outbox::default()),
            waker: AtomicWaker::new(),
            kick: AtomicU8::new(0),
            timer_fired: AtomicBool::new(false),
            opened_at: now,
            logged_in: AtomicBool::new(false),
            last_seen: AtomicU64::new(now),
            ack_due: AtomicU64::new(0),
        }
    }

    /// Queues `item` and wakes the session; on overflow kicks it instead.
    pub fn enqueue(&self, item: Arc<Outgoing>) -> Enqueue {
        {
            let mut ob = self.outbox.lock();
            if ob.closed {
                return Enqueue::Closed;
            }
            if ob.items.len() >= self.limit {
                drop(ob);
                self.kick(Kick::SlowReader);
                return Enqueue::Overflow;
            }
            ob.items.push_back(item);
        }
        self.waker.wake();
        Enqueue::Queued
    }

    /// Takes the next queued item.
    pub fn pop(&self) -> Option<Arc<Outgoing>> {
        let mut ob = self.outbox.lock();
        let item = ob.items.pop_front();
        if ob.items.is_empty() && ob.items.capacity() > 64 {
            ob.items = VecDeque::new();
        }
        item
    }

    /// Refuses further items and drops the queued ones.
    pub fn close_outbox(&self) {
        let mut ob = self.outbox.lock();
        ob.closed = true;
        ob.items = VecDeque::new();
    }

    /// Asks the session to end (the first reason wins).
    pub fn kick(&self, why: Kick) {
        let _ = self
            .kick
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    pub fn kicked(&self) -> Option<Kick> {
        Kick::from_u8(self.kick.load(Ordering::Acquire))
    }

    /// Wakes the session to look at its ACK deadlines.
    pub fn fire_timer(&self) {
        self.timer_fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn take_timer(&self) -> bool {
        self.timer_fired.swap(false, Ordering::AcqRel)
    }

    pub fn register(&self, w: &std::task::Waker) {
        self.waker.register(w);
    }
}

/// Token bucket of a user's chat messages.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

struct UserEntry {
    sessions: Vec<(Option<i64>, Arc<SessionHandle>)>,
    bucket: Bucket,
}

/// What [`Hub::unbind`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unbound {
    /// The session was still the registered one (not replaced by a newer login).
    pub was_bound: bool,
    /// Other sessions of the same user remain on this gateway.
    pub user_still_here: bool,
}

type ConnShard = Mutex<IdMap<u64, Arc<SessionHandle>>>;

/// The local index (see module docs).
pub(crate) struct Hub {
    conns: Box<[ConnShard]>,
    users: Box<[RwLock<IdMap<i64, UserEntry>>]>,
    conn_count: AtomicUsize,
    logged_in: AtomicUsize,
}

fn user_shard(user: i64) -> usize {
    (user as u64 as usize) % SHARDS
}

impl Hub {
    pub fn new() -> Self {
        Hub {
            conns: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            users: (0..SHARDS).map(|_| RwLock::new(IdMap::default())).collect(),
            conn_count: AtomicUsize::new(0),
            logged_in: AtomicUsize::new(0),
        }
    }

    pub fn add_conn(&self, s: &Arc<SessionHandle>) {
        self.conns[s.id as usize % SHARDS]
            .lock()
            .insert(s.id, s.clone());
        self.conn_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn remove_conn(&self, id: u64) {
        if self.conns[id as usize % SHARDS]
            .lock()
            .remove(&id)
            .is_some()
        {
            self.conn_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Open connections (logged in or not).
    pub fn conn_count(&self) -> usize {
        self.conn_count.load(Ordering::Relaxed)
    }

    /// Logged-in sessions.
    pub fn session_count(&self) -> usize {
        self.logged_in.load(Ordering::Relaxed)
    }

    /// Calls `f` on every open connection, one shard lock at a time.
    pub fn for_each_conn(&self, mut f: impl FnMut(&Arc<SessionHandle>)) {
        for shard in self.conns.iter() {
            for s in shard.lock().values() {
                f(s);
            }
        }
    }

    /// Registers a logged-in session; returns the session it replaces (same user, same room).
    pub fn bind(
        &self,
        user: i64,
        room: Option<i64>,
        s: &Arc<SessionHandle>,
        now_ms: u64,
        rate: f64,
    ) -> Option<Arc<SessionHandle>> {
        let mut shard = self.users[user_shard(user)].write();
        let e = shard.entry(user).or_insert_with(|| UserEntry {
            sessions: Vec::with_capacity(1),
            bucket: Bucket {
                tokens: rate,
                at_ms: now_ms,
            },
        });
        let old = e
            .sessions
            .iter()
            .position(|(r, _)| *r == room)
            .map(|i| e.sessions.swap_remove(i).1);
        e.sessions.push((room, s.clone()));
        if old.is_none() {
            self.logged_in.fetch_add(1, Ordering::Relaxed);
        }
        old
    }

    /// Removes a session registered by [`Hub::bind`], if it is still the registered one.
    pub fn unbind(&self, user: i64, session_id: u64) -> Unbound {
        let mut shard = self.users[user_shard(user)].write();
        let Some(e) = shard.get_mut(&user) else {
            return Unbound {
                was_bound: false,
                user_still_here: false,
            };
        };
        let was_bound = match e.sessions.iter().position(|(_, s)| s.id == session_id) {
            Some(i) => {
                e.sessions.swap_remove(i);
                self.logged_in.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        };
        let user_still_here = !e.sessions.is_empty();
        if !user_still_here {
            shard.remove(&user);
        }
        Unbound {
            was_bound,
            user_still_here,
        }
    }

    /// Takes one chat token from `user`'s bucket (`rate` per second, burst `rate`).
    pub fn try_chat(&self, user: i64, now_ms: u64, rate: f64) -> bool {
        let mut shard = self.users[user_shard(user)].write();
        let Some(e) = shard.get_mut(&user) else {
            return false;
        };
        let b = &mut e.bucket;
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Calls `f` on each session of `user` that should see a message of `room` (sessions in that
    /// room, and sessions logged in without a room).
    pub fn for_each_session_in(
        &self,
        user: i64,
        room: i64,
        mut f: impl FnMut(&Arc<SessionHandle>),
    ) {
        let shard = self.users[user_shard(user)].read();
        if let Some(e) = shard.get(&user) {
            for (r, s) in &e.sessions {
                if r.is_none_or(|r| r == room) {
                    f(s);
                }
            }
        }
    }

    /// Calls `f` with the room and handle of each session of `user`.
    pub fn for_each_session_of(
        &self,
        user: i64,
        mut f: impl FnMut(Option<i64>, &Arc<SessionHandle>),
    ) {
        let shard = self.users[user_shard(user)].read();
        if let Some(e) = shard.get(&user) {
            for (r, s) in &e.sessions {
                f(*r, s);
            }
        }
    }

    /// Whether `user` has a logged-in session here.
    pub fn has_user(&self, user: i64) -> bool {
        self.users[user_shard(user)].read().contains_key(&user)
    }
}
