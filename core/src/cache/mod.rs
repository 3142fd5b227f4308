//! The cache port: what the services need from Redis, and nothing more.
//!
//! Strings with TTLs (room cache, IM tokens, user → gateway bindings), set-if-absent locks,
//! whole-list replacement plus paged reads (room lists), sets (room members) and sorted sets
//! (online heartbeats, gateway registry). Two adapters: [`MemoryCache`] (embedded default) and
//! [`RedisCache`]. Both pass [`conformance::run_all`]; a new operation is added to the trait, both
//! adapters and the suite together.
//!
//! Must not: hold domain logic (key naming belongs to the service that owns the data) or expose
//! the Redis client type to callers.

pub mod conformance;
mod memory;
mod redis_cache;

use async_trait::async_trait;
use std::time::Duration;

pub use memory::MemoryCache;
pub use redis_cache::RedisCache;

/// Failure of a cache operation.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend error: {0}")]
    Backend(String),
    #[error("cache key `{0}` holds a value of another type")]
    WrongType(String),
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") {
            CacheError::WrongType(e.to_string())
        } else {
            CacheError::Backend(e.to_string())
        }
    }
}

pub type CacheResult<T> = Result<T, CacheError>;

/// Splits a value written by [`Cache::set_if_newer`] into its version and value; `None` when it
/// does not start with `<digits>:`.
pub fn split_versioned(stored: &str) -> Option<(u64, &str)> {
    let (v, rest) = stored.split_once(':')?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v.parse().ok()?, rest))
}

/// Key/value, list, set and sorted-set operations with Redis semantics. Keys are plain strings;
/// an adapter may add its own namespace prefix. Expired keys behave exactly like absent ones.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> CacheResult<Option<String>>;
    /// One value per key, in order (`MGET`): one round trip for many keys.
    async fn get_many(&self, keys: &[String]) -> CacheResult<Vec<Option<String>>>;
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> CacheResult<()>;
    /// Sets only when absent (`SET NX PX`); true when this call set it. The building block of locks.
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> CacheResult<bool>;
    /// Removes a key of any type; true when it existed.
    async fn del(&self, key: &str) -> CacheResult<bool>;
    /// Removes a string key only while it still holds `value` (releasing a lock one owns).
    async fn del_if_eq(&self, key: &str, value: &str) -> CacheResult<bool>;
    /// Sets a key's time to live; false when the key does not exist.
    async fn expire(&self, key: &str, ttl: Duration) -> CacheResult<bool>;
    /// Adds `delta` to an integer string (absent = 0) and returns the new value.
    async fn incr_by(&self, key: &str, delta: i64) -> CacheResult<i64>;
    /// A fixed-window counter: adds 1 to `key`, giving it the time to live `window` when this
    /// call created it (`INCR` + `PEXPIRE NX`, atomically). Returns the count in the current
    /// window and the time left until it resets. The building block of rate limits shared by
    /// every process on the cache.
    async fn incr_window(&self, key: &str, window: Duration) -> CacheResult<(i64, Duration)>;
    /// A token bucket shared by every process on the cache (GCRA: one stored "theoretical
    /// arrival time" per key): one action per `interval` on average, up to `burst` at once.
    /// Takes one token and returns `None`, or leaves the bucket unchanged and returns how long
    /// until a token is free. Both adapters do it atomically on the cache's own clock.
    async fn throttle(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> CacheResult<Option<Duration>>;
    /// Stores `value` under a version: the key becomes the string `"<version>:<value>"` (read it
    /// back with [`split_versioned`]) unless it already holds a version ≥ `version`, so of
    /// several writers racing, the newest version wins whatever the order of arrival. An absent
    /// key, or one whose value carries no version, counts as version 0. True when this call
    /// wrote. Both adapters do it atomically; the default (get, then set) is not, and is only
    /// for test wrappers.
    async fn set_if_newer(
        &self,
        key: &str,
        version: u64,
        value: &str,
        ttl: Option<Duration>,
    ) -> CacheResult<bool> {
        let current = self.get(key).await?;
        if current
            .as_deref()
            .and_then(split_versioned)
            .is_some_and(|(v, _)| v >= version)
        {
            return Ok(false);
        }
        self.set(key, &format!("{version}:{value}"), ttl).await?;
        Ok(true)
    }

    /// Atomically replaces the whole list (readers see the old or the new list, never a mix).
    /// An empty `items` removes the key.
    async fn list_replace(&self, key: &str, items: &[String]) -> CacheResult<()>;
    /// Items `start..=stop` (`LRANGE`); out-of-range bounds are clamped.
    async fn list_range(&self, key: &str, start: usize, stop: usize) -> CacheResult<Vec<String>>;
    async fn list_len(&self, key: &str) -> CacheResult<usize>;

    /// Adds members; returns how many were new.
    async fn set_add(&self, key: &str, members: &[String]) -> CacheResult<usize>;
    /// Removes members; returns how many were present.
    async fn set_remove(&self, key: &str, members: &[String]) -> CacheResult<usize>;
    async fn set_members(&self, key: &str) -> CacheResult<Vec<String>>;
    async fn set_card(&self, key: &str) -> CacheResult<usize>;

    /// Adds or updates a member's score.
    async fn zadd(&self, key: &str, member: &str, score: f64) -> CacheResult<()>;
    async fn zscore(&self, key: &str, member: &str) -> CacheResult<Option<f64>>;
    async fn zrem(&self, key: &str, member: &str) -> CacheResult<bool>;
    /// Removes members with `min <= score <= max`; returns how many.
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> CacheResult<usize>;
    /// Members with `min <= score <= max`, lowest score first.
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
    ) -> CacheResult<Vec<(String, f64)>>;
}
