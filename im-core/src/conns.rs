//! The gateway's local index of connections, and the handle through which other tasks reach
//! one.
//!
//! - [`ConnHandle`]: the part of a connection other tasks may touch: its bounded outbox (what
//!   the fan-out and the publisher hand it), a waker, a kick flag and the deadlines the sweeper
//!   reads. Everything else about a connection is owned by its task (`conn.rs`).
//! - [`Conns`]: every open connection by id (sweeper, kicks, counts), and the logged-in ones by
//!   user (device replacement, kicks by user) with each user's chat rate bucket. Sharded
//!   `parking_lot` locks, never held across an `.await`. Which connections are in which room is
//!   the fan-out's (`fanout.rs`), not this index's.
//!
//! Must not: do I/O, call the cache or the bus, or decide protocol replies.

use bytes::Bytes;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::protocol::Wire;

const SHARDS: usize = 16;

/// A fast hasher for integer ids (user, connection, room ids: authenticated or server-made, so
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

/// One message of a room's stream ready to go out: its ids and its frame in both forms, encoded
/// once per gateway and shared by every connection that receives it.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub msg_id: Box<str>,
    pub offset: u64,
    /// When the gateway that accepted it did (epoch ms; 0 = unknown).
    pub sent_at_ms: i64,
    /// The connection of this gateway it came from (0: none), which does not get it back.
    pub origin: u64,
    /// For a recall: the message ids it takes back.
    pub recalls: Box<[Box<str>]>,
    pub ws: Bytes,
    pub tcp: Bytes,
}

/// What a connection's outbox holds: one or more messages with their frames concatenated in
/// both forms (shared by every connection that receives exactly these messages), or a reply
/// made by another task (no messages: nothing to acknowledge).
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

    /// The messages `msgs` as one item (their frames concatenated).
    pub fn of(msgs: Vec<Arc<Prepared>>) -> Outgoing {
        if msgs.len() == 1 {
            return Outgoing {
                ws: msgs[0].ws.clone(),
                tcp: msgs[0].tcp.clone(),
                msgs,
            };
        }
        let mut ws = bytes::BytesMut::with_capacity(msgs.iter().map(|m| m.ws.len()).sum());
        let mut tcp = bytes::BytesMut::with_capacity(msgs.iter().map(|m| m.tcp.len()).sum());
        for m in &msgs {
            ws.extend_from_slice(&m.ws);
            tcp.extend_from_slice(&m.tcp);
        }
        Outgoing {
            ws: ws.freeze(),
            tcp: tcp.freeze(),
            msgs,
        }
    }
}

/// Why a connection is told to end by another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kick {
    /// A newer login of the same user, device and room (on any gateway), or the user went over
    /// their connection limit.
    Replaced = 1,
    /// Silent for two heartbeat gaps.
    Idle = 2,
    /// Its outbound queue overflowed.
    SlowReader = 3,
    /// The gateway is closing every connection.
    Shutdown = 4,
    /// Connected but not logged in within the login deadline.
    LoginTimeout = 5,
    /// Banned from its room (design §3.2).
    Banned = 6,
    /// Its account was suspended.
    Suspended = 7,
}

impl Kick {
    fn from_u8(v: u8) -> Option<Kick> {
        Some(match v {
            1 => Kick::Replaced,
            2 => Kick::Idle,
            3 => Kick::SlowReader,
            4 => Kick::Shutdown,
            5 => Kick::LoginTimeout,
            6 => Kick::Banned,
            7 => Kick::Suspended,
            _ => return None,
        })
    }
}

/// Result of queueing on a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueue {
    Queued,
    /// The outbox was full: the connection has been kicked as a slow reader.
    Overflow,
    Closed,
}

#[derive(Default)]
struct Outbox {
    items: VecDeque<Arc<Outgoing>>,
    closed: bool,
}

/// The shared half of a connection (see module docs).
pub(crate) struct ConnHandle {
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

impl ConnHandle {
    pub fn new(id: u64, limit: usize, now: u64) -> Self {
        ConnHandle {
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

    /// Queues `item` and wakes the connection; on overflow kicks it instead.
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

    pub fn is_closed(&self) -> bool {
        self.outbox.lock().closed
    }

    /// Asks the connection to end (the first reason wins).
    pub fn kick(&self, why: Kick) {
        let _ = self
            .kick
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    pub fn kicked(&self) -> Option<Kick> {
        Kick::from_u8(self.kick.load(Ordering::Acquire))
    }

    /// Wakes the connection to look at its ACK deadlines.
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

/// A logged-in connection as this index knows it.
#[derive(Clone)]
pub(crate) struct Login {
    pub conn: Arc<ConnHandle>,
    pub device: Arc<str>,
    pub room: Option<i64>,
    /// Epoch ms of the login.
    pub at_ms: i64,
}

/// Token bucket of a user's chat messages.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

struct UserEntry {
    logins: Vec<Login>,
    bucket: Bucket,
}

type ConnShard = Mutex<IdMap<u64, Arc<ConnHandle>>>;

/// The local index (see module docs).
pub(crate) struct Conns {
    by_id: Box<[ConnShard]>,
    by_user: Box<[Mutex<IdMap<i64, UserEntry>>]>,
    open: AtomicUsize,
    logged_in: AtomicUsize,
}

fn user_shard(user: i64) -> usize {
    (user as u64 as usize) % SHARDS
}

impl Conns {
    pub fn new() -> Self {
        Conns {
            by_id: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            by_user: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            open: AtomicUsize::new(0),
            logged_in: AtomicUsize::new(0),
        }
    }

    pub fn add(&self, c: &Arc<ConnHandle>) {
        self.by_id[c.id as usize % SHARDS]
            .lock()
            .insert(c.id, c.clone());
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn remove(&self, id: u64) {
        if self.by_id[id as usize % SHARDS]
            .lock()
            .remove(&id)
            .is_some()
        {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<ConnHandle>> {
        self.by_id[id as usize % SHARDS].lock().get(&id).cloned()
    }

    /// Open connections (logged in or not).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Logged-in connections.
    pub fn logged_in(&self) -> usize {
        self.logged_in.load(Ordering::Relaxed)
    }

    /// Calls `f` on every open connection, one shard lock at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<ConnHandle>)) {
        for shard in self.by_id.iter() {
            for c in shard.lock().values() {
                f(c);
            }
        }
    }

    /// Registers a logged-in connection; returns this user's connections on this gateway with
    /// the same device and room, which it replaces (they are unregistered here).
    pub fn login(&self, user: i64, login: Login, now_ms: u64, rate: f64) -> Vec<Arc<ConnHandle>> {
        let mut shard = self.by_user[user_shard(user)].lock();
        let e = shard.entry(user).or_insert_with(|| UserEntry {
            logins: Vec::with_capacity(1),
            bucket: Bucket {
                tokens: rate,
                at_ms: now_ms,
            },
        });
        let mut replaced = Vec::new();
        e.logins.retain(|l| {
            let same = l.device == login.device && l.room == login.room;
            if same {
                replaced.push(l.conn.clone());
            }
            !same
        });
        e.logins.push(login);
        self.logged_in.fetch_add(1, Ordering::Relaxed);
        self.logged_in.fetch_sub(replaced.len(), Ordering::Relaxed);
        replaced
    }

    /// Unregisters a logged-in connection; false when it was not registered (replaced).
    pub fn logout(&self, user: i64, conn: u64) -> bool {
        let mut shard = self.by_user[user_shard(user)].lock();
        let Some(e) = shard.get_mut(&user) else {
            return false;
        };
        let before = e.logins.len();
        e.logins.retain(|l| l.conn.id != conn);
        let was = e.logins.len() < before;
        if was {
            self.logged_in.fetch_sub(1, Ordering::Relaxed);
        }
        if e.logins.is_empty() {
            shard.remove(&user);
        }
        was
    }

    /// The user's logged-in connections here.
    pub fn user_logins(&self, user: i64) -> Vec<Login> {
        self.by_user[user_shard(user)]
            .lock()
            .get(&user)
            .map(|e| e.logins.clone())
            .unwrap_or_default()
    }

    /// Every logged-in connection: `(user, login)`.
    pub fn all_logins(&self) -> Vec<(i64, Login)> {
        let mut v = Vec::new();
        for shard in self.by_user.iter() {
            for (u, e) in shard.lock().iter() {
                v.extend(e.logins.iter().map(|l| (*u, l.clone())));
            }
        }
        v
    }

    /// Takes one chat token from `user`'s bucket (`rate` per second, burst `rate`).
    pub fn try_chat(&self, user: i64, now_ms: u64, rate: f64) -> bool {
        let mut shard = self.by_user[user_shard(user)].lock();
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
}
