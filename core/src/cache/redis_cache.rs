//! Redis adapter of the cache port, over one auto-reconnecting multiplexed connection.
//!
//! Every key gets the adapter's prefix, so tests and several deployments can share one server.

use super::{Cache, CacheResult};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use std::time::Duration;

/// The distributed cache.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

/// `set_if_newer`: KEYS[1], ARGV = version, value, ttl ms (0 = none). The stored version is the
/// digits before the first `:` of the current string (none = 0).
const SET_IF_NEWER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = string.match(cur, '^(%d+):')
  if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
end
local val = ARGV[1] .. ':' .. ARGV[2]
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], val, 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], val)
end
return 1
"#;

/// `incr_window`: KEYS[1], ARGV = window ms. Returns {count, ms left}.
const INCR_WINDOW: &str = r#"
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"#;

/// `throttle` (GCRA): KEYS[1], ARGV = interval ms, burst. Uses the server's clock, so every
/// process agrees. Returns 0 (token taken) or the ms until one is free.
const THROTTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local step = tonumber(ARGV[1])
local slack = step * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - slack
if now < allow_at then return allow_at - now end
local new_tat = tat + step
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', new_tat - now)
return 0
"#;

const DEL_IF_EQ: &str = r#"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"#;

impl RedisCache {
    /// Connects to `url` (`redis://host:port/db`); every key is stored as `prefix + key`.
    pub async fn connect(url: &str, prefix: &str) -> CacheResult<Self> {
        let client = redis::Client::open(url)?;
        // A call fails within about a second while Redis is down (the default retries with
        // backoff for ~10 s), so callers fall back (room reads go to SQL) instead of hanging.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(250))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
        })
    }

    fn k(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> CacheResult<Option<String>> {
        Ok(self.conn().get(self.k(key)).await?)
    }

    async fn get_many(&self, keys: &[String]) -> CacheResult<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let keys: Vec<String> = keys.iter().map(|k| self.k(k)).collect();
        Ok(redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn())
            .await?)
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> CacheResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.k(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ms(ttl));
        }
        let () = cmd.query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn set_if_newer(
        &self,
        key: &str,
        version: u64,
        value: &str,
        ttl: Option<Duration>,
    ) -> CacheResult<bool> {
        let n: i64 = redis::Script::new(SET_IF_NEWER)
            .key(self.k(key))
            .arg(version)
            .arg(value)
            .arg(ttl.map(ms).unwrap_or(0))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> CacheResult<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.k(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut self.conn())
            .await?;
        Ok(reply.is_some())
    }

    async fn del(&self, key: &str) -> CacheResult<bool> {
        let n: i64 = self.conn().del(self.k(key)).await?;
        Ok(n > 0)
    }

    async fn del_if_eq(&self, key: &str, value: &str) -> CacheResult<bool> {
        let n: i64 = redis::Script::new(DEL_IF_EQ)
            .key(self.k(key))
            .arg(value)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        let n: i64 = redis::cmd("PEXPIRE")
            .arg(self.k(key))
            .arg(ms(ttl))
            .query_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    async fn incr_by(&self, key: &str, delta: i64) -> CacheResult<i64> {
        Ok(self.conn().incr(self.k(key), delta).await?)
    }

    async fn incr_window(&self, key: &str, window: Duration) -> CacheResult<(i64, Duration)> {
        let (n, left): (i64, i64) = redis::Script::new(INCR_WINDOW)
            .key(self.k(key))
            .arg(ms(window).max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok((n, Duration::from_millis(left.max(0) as u64)))
    }

    async fn throttle(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> CacheResult<Option<Duration>> {
        let wait: i64 = redis::Script::new(THROTTLE)
            .key(self.k(key))
            .arg(ms(interval).max(1))
            .arg(burst.max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }

    async fn list_replace(&self, key: &str, items: &[String]) -> CacheResult<()> {
        let live = self.k(key);
        if items.is_empty() {
            let _: i64 = self.conn().del(&live).await?;
            return Ok(());
        }
        // Build the new list under a unique temporary name, then RENAME it over the live one:
        // RENAME is atomic, so readers never see a half-written list.
        let tmp = format!("{live}:tmp:{}", crate::ids::random_hex(8));
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in items.chunks(512) {
            pipe.cmd("RPUSH").arg(&tmp).arg(chunk).ignore();
        }
        pipe.cmd("RENAME").arg(&tmp).arg(&live).ignore();
        let () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn list_range(&self, key: &str, start: usize, stop: usize) -> CacheResult<Vec<String>> {
        if start > stop {
            return Ok(vec![]);
        }
        Ok(self
            .conn()
            .lrange(self.k(key), start as isize, stop as isize)
            .await?)
    }

    async fn list_len(&self, key: &str) -> CacheResult<usize> {
        Ok(self.conn().llen(self.k(key)).await?)
    }

    async fn set_add(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        Ok(self.conn().sadd(self.k(key), members).await?)
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        Ok(self.conn().srem(self.k(key), members).await?)
    }

    async fn set_members(&self, key: &str) -> CacheResult<Vec<String>> {
        Ok(self.conn().smembers(self.k(key)).await?)
    }

    async fn set_card(&self, key: &str) -> CacheResult<usize> {
        Ok(self.conn().scard(self.k(key)).await?)
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> CacheResult<()> {
        let _: i64 = self.conn().zadd(self.k(key), member, score).await?;
        Ok(())
    }

    async fn zscore(&self, key: &str, member: &str) -> CacheResult<Option<f64>> {
        Ok(self.conn().zscore(self.k(key), member).await?)
    }

    async fn zrem(&self, key: &str, member: &str) -> CacheResult<bool> {
        let n: i64 = self.conn().zrem(self.k(key), member).await?;
        Ok(n > 0)
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> CacheResult<usize> {
        Ok(self.conn().zrembyscore(self.k(key), min, max).await?)
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
    ) -> CacheResult<Vec<(String, f64)>> {
        Ok(self
            .conn()
            .zrangebyscore_withscores(self.k(key), min, max)
            .await?)
    }
}
