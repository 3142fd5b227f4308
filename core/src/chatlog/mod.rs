//! The chat log port: every room's chat as a stream with an `epoch` and `offset`s (design §3.1),
//! what history on join and recovery after a reconnect read from.
//!
//! - **One writer per room.** The `msg` role appends each accepted message once, in the room's bus
//!   order (the bus is keyed by room); [`ChatLog::append`] gives it the next offset, and gives the
//!   same offset again for a message id it already holds (a redelivered message), so a message
//!   gets its offset exactly once.
//! - **Epoch.** A random string made when a room's stream starts (or is started again after its
//!   stored state was lost, e.g. a Redis restart); offsets are +1 per message within an epoch.
//! - **Retention** ([`LogConfig`]): the last `max_len` entries and nothing older than `max_age`.
//!   `first` tells readers what trimming removed: offsets below it are gone, so a reader that
//!   needs one of them cannot recover completely. A removed (recalled) message leaves a hole that
//!   is *not* a loss: it is simply no longer part of the chat.
//! - Every operation takes the caller's clock (`now_ms`) for the age rule, so both adapters
//!   behave the same under test without waiting.
//!
//! Two adapters pass one [`conformance`] suite: [`MemoryChatLog`] (embedded default) and
//! [`RedisChatLog`] (Redis Streams, each operation one atomic Lua script, as Centrifugo does).
//!
//! Must not: interpret payloads beyond the entry's kind, or grow beyond its retention.

pub mod conformance;
mod memory;
mod redis_log;

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

pub use memory::MemoryChatLog;
pub use redis_log::RedisChatLog;

/// Failure of a chat log operation.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("chat log backend error: {0}")]
    Backend(String),
}

impl From<redis::RedisError> for LogError {
    fn from(e: redis::RedisError) -> Self {
        LogError::Backend(e.to_string())
    }
}

pub type LogResult<T> = Result<T, LogError>;

/// Retention of each room's stream.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Entries kept per room (the oldest are trimmed).
    pub max_len: usize,
    /// Entries older than this are trimmed (and never returned).
    pub max_age: Duration,
    /// How long a room's epoch and top offset outlive its last append, so a client that was
    /// away while nothing was said still recovers (with nothing to replay).
    pub meta_ttl: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_len: 300,
            max_age: Duration::from_secs(3600),
            meta_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A point of a room's stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: String,
    /// The offset of the last message (0 before the first).
    pub offset: u64,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Unique id; appending an id the log still holds returns its existing offset.
    pub msg_id: String,
    /// What the entry is (the message's `bizCode`: chat, recall, notice).
    pub kind: i32,
    /// When it was accepted (epoch ms); also the clock of the age rule for this append.
    pub at_ms: i64,
    pub payload: Bytes,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub msg_id: String,
    pub kind: i32,
    pub at_ms: i64,
    pub payload: Bytes,
}

/// What [`ChatLog::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message's epoch and offset.
    pub pos: Position,
    /// False when the log already held this message id (nothing was added).
    pub fresh: bool,
}

/// Entries of a room and where the room's stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slice {
    pub epoch: String,
    /// Offset of the room's last message.
    pub top: u64,
    /// Lowest offset not lost to trimming: every message from here to `top` is either in the
    /// log or was removed on purpose (recalled).
    pub first: u64,
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The read stopped at its limit: more entries follow the last one returned.
    pub more: bool,
}

impl Slice {
    /// Whether this slice holds every message after `offset` of `epoch` (design §3.1: recover
    /// completely or not at all).
    pub fn covers_after(&self, epoch: &str, offset: u64) -> bool {
        epoch == self.epoch
            && offset <= self.top
            && offset.saturating_add(1) >= self.first
            && !self.more
    }

    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.top,
        }
    }
}

/// Each room's chat stream (see the module docs).
#[async_trait]
pub trait ChatLog: Send + Sync + 'static {
    fn config(&self) -> &LogConfig;

    /// Appends `e` to the room's stream (idempotent by `msg_id`), trimming by length and age.
    async fn append(&self, room: i64, e: NewEntry) -> LogResult<Appended>;

    /// Up to `limit` entries with an offset above `after`, oldest first.
    async fn read_after(
        &self,
        room: i64,
        after: u64,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice>;

    /// The newest `limit` entries of `kind` with an offset below `before` (all when `None`),
    /// oldest first: a page of history.
    async fn history(
        &self,
        room: i64,
        kind: i32,
        before: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice>;

    /// Where the room's stream stands; starts an epoch for a room that has none, so the
    /// position a client is given stays valid when the first message comes.
    async fn top(&self, room: i64, now_ms: i64) -> LogResult<Position>;

    /// Where each room stands, `None` for a room without a stream (one round trip).
    async fn tops(&self, rooms: &[i64]) -> LogResult<Vec<Option<Position>>>;

    /// Removes messages by id (a recall); returns the offsets removed.
    async fn remove(&self, room: i64, msg_ids: &[String]) -> LogResult<Vec<u64>>;

    /// Trims what is over the length or older than the age limit; returns how many entries.
    async fn trim(&self, room: i64, now_ms: i64) -> LogResult<usize>;
}

/// Milliseconds of a duration, at least 1.
pub(crate) fn ms(d: Duration) -> i64 {
    (d.as_millis() as i64).max(1)
}
