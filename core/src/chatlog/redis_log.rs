//! Redis adapter of the chat log: one Redis Stream per room, each operation one Lua script so it
//! is atomic (Centrifugo's way).
//!
//! Keys per room (all with the adapter's prefix; `{room}` is a hash tag so a cluster keeps them
//! on one node):
//! - `chat:{R}:s`: the stream; entry id `<offset>-0`, fields `m` (msg id), `k` (kind),
//!   `a` (accepted at, epoch ms), `p` (payload). Expires `max_age` after the last append.
//! - `chat:{R}:m`: hash `e` (epoch), `t` (top offset), `f` (first offset not lost to trimming).
//!   Expires `meta_ttl` after the last append.
//! - `chat:{R}:i`: sorted set msg id → offset, for idempotent appends; removed (recalled) ids
//!   stay until trimming passes them, so a redelivered recalled message is not appended again.
//!
//! A room whose meta is missing (new, expired, or lost with the server's data) starts a new epoch
//! and drops any stream left behind.

use super::{
    ms, Appended, ChatLog, Entry, LogConfig, LogError, LogResult, NewEntry, Position, Slice,
};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

/// Shared Lua: `meta()` makes or reads the epoch; `trim()` applies the length and age rules and
/// keeps `f` and the id set in step.
const PRELUDE: &str = r#"
local s, m, i = KEYS[1], KEYS[2], KEYS[3]
local function meta(new_epoch, meta_ttl)
  local e = redis.call('HGET', m, 'e')
  if not e then
    redis.call('DEL', s, i)
    redis.call('HSET', m, 'e', new_epoch, 't', 0, 'f', 1)
    redis.call('PEXPIRE', m, meta_ttl)
    e = new_epoch
  end
  return e
end
local function offset_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end
local function trim(maxlen, cutoff)
  local n = 0
  local len = redis.call('XLEN', s)
  if len > maxlen then
    n = n + redis.call('XTRIM', s, 'MAXLEN', maxlen)
  end
  while true do
    local chunk = redis.call('XRANGE', s, '-', '+', 'COUNT', 64)
    local old = {}
    for _, e in ipairs(chunk) do
      if tonumber(e[2][6]) < cutoff then table.insert(old, e[1]) else break end
    end
    if #old > 0 then
      n = n + redis.call('XDEL', s, unpack(old))
    end
    if #old < 64 then break end
  end
  local top = tonumber(redis.call('HGET', m, 't') or '0')
  local f = tonumber(redis.call('HGET', m, 'f') or '1')
  local oldest
  local head = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)
  if #head == 0 then
    if top > 0 then oldest = top + 1 end
  elseif n > 0 then
    oldest = offset_of(head[1][1])
  end
  if oldest and oldest > f then
    f = oldest
    redis.call('HSET', m, 'f', string.format('%d', f))
    redis.call('ZREMRANGEBYSCORE', i, '-inf', '(' .. string.format('%d', f))
  end
  return n
end
local function slice(epoch, entries, more)
  local top = tonumber(redis.call('HGET', m, 't') or '0')
  local f = tonumber(redis.call('HGET', m, 'f') or '1')
  return {epoch, top, f, more, entries}
end
"#;

/// ARGV: msg_id, kind, at_ms, payload, maxlen, max_age_ms, meta_ttl_ms, new_epoch.
const APPEND: &str = r#"
local id, kind, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
local maxlen, max_age, meta_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local epoch = meta(ARGV[8], meta_ttl)
trim(maxlen, at - max_age)
local existing = redis.call('ZSCORE', i, id)
if existing then return {epoch, tonumber(existing), 0} end
local top = redis.call('HINCRBY', m, 't', 1)
redis.call('XADD', s, string.format('%d-0', top), 'm', id, 'k', kind, 'a', ARGV[3], 'p', ARGV[4])
redis.call('ZADD', i, top, id)
trim(maxlen, at - max_age)
redis.call('PEXPIRE', s, max_age)
redis.call('PEXPIRE', i, max_age)
redis.call('PEXPIRE', m, meta_ttl)
return {epoch, top, 1}
"#;

/// ARGV: start id, limit, now_ms, maxlen, max_age_ms, meta_ttl_ms, new_epoch.
const READ_AFTER: &str = r#"
local limit = tonumber(ARGV[2])
local epoch = meta(ARGV[7], tonumber(ARGV[6]))
trim(tonumber(ARGV[4]), tonumber(ARGV[3]) - tonumber(ARGV[5]))
local entries = redis.call('XRANGE', s, ARGV[1], '+', 'COUNT', limit + 1)
local more = 0
if #entries > limit then
  more = 1
  table.remove(entries)
end
return slice(epoch, entries, more)
"#;

/// ARGV: kind, end id ('+' or '<offset>-0'), limit, now_ms, maxlen, max_age_ms, meta_ttl_ms,
/// new_epoch. Returns the newest matches, newest first.
const HISTORY: &str = r#"
local kind, endid, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local epoch = meta(ARGV[8], tonumber(ARGV[7]))
trim(tonumber(ARGV[5]), tonumber(ARGV[4]) - tonumber(ARGV[6]))
local out = {}
while #out <= limit do
  local chunk = redis.call('XREVRANGE', s, endid, '-', 'COUNT', 64)
  for _, e in ipairs(chunk) do
    if e[2][4] == kind then
      table.insert(out, e)
      if #out > limit then break end
    end
  end
  if #chunk < 64 or #out > limit then break end
  local n = offset_of(chunk[#chunk][1])
  if n <= 1 then break end
  endid = string.format('%d-0', n - 1)
end
local more = 0
if #out > limit then
  more = 1
  table.remove(out)
end
return slice(epoch, out, more)
"#;

/// ARGV: new_epoch, meta_ttl_ms.
const TOP: &str = r#"
local epoch = meta(ARGV[1], tonumber(ARGV[2]))
return {epoch, tonumber(redis.call('HGET', m, 't') or '0')}
"#;

/// ARGV: msg ids.
const REMOVE: &str = r#"
local gone = {}
for _, id in ipairs(ARGV) do
  local off = redis.call('ZSCORE', i, id)
  if off then
    if redis.call('XDEL', s, string.format('%d-0', tonumber(off))) == 1 then
      table.insert(gone, tonumber(off))
    end
  end
end
return gone
"#;

/// ARGV: now_ms, maxlen, max_age_ms.
const TRIM: &str = r#"
if redis.call('EXISTS', m) == 0 then return 0 end
return trim(tonumber(ARGV[2]), tonumber(ARGV[1]) - tonumber(ARGV[3]))
"#;

/// The distributed chat log.
#[derive(Clone)]
pub struct RedisChatLog {
    conn: ConnectionManager,
    prefix: String,
    cfg: LogConfig,
    append: Script,
    read_after: Script,
    history: Script,
    top: Script,
    remove: Script,
    trim: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

fn bad(what: &str) -> LogError {
    LogError::Backend(format!("unexpected reply from Redis: {what}"))
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    as_bytes(v).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_string(other)?.parse().ok(),
    }
}

/// One stream entry `[id, [m, id, k, kind, a, at, p, payload]]`.
fn entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let [id, Value::Array(fields)] = parts.as_slice() else {
        return None;
    };
    let offset = as_string(id)?.split('-').next()?.parse().ok()?;
    let mut e = Entry {
        offset,
        msg_id: String::new(),
        kind: 0,
        at_ms: 0,
        payload: Bytes::new(),
    };
    for kv in fields.chunks(2) {
        let [k, v] = kv else { return None };
        match as_bytes(k)? {
            b"m" => e.msg_id = as_string(v)?,
            b"k" => e.kind = as_string(v)?.parse().ok()?,
            b"a" => e.at_ms = as_string(v)?.parse().ok()?,
            b"p" => e.payload = Bytes::copy_from_slice(as_bytes(v)?),
            _ => {}
        }
    }
    Some(e)
}

/// `{epoch, top, first, more, entries}`.
fn slice(v: Value) -> LogResult<Slice> {
    let Value::Array(parts) = v else {
        return Err(bad("slice"));
    };
    let [epoch, top, first, more, Value::Array(entries)] = parts.as_slice() else {
        return Err(bad("slice fields"));
    };
    Ok(Slice {
        epoch: as_string(epoch).ok_or_else(|| bad("epoch"))?,
        top: as_u64(top).ok_or_else(|| bad("top"))?,
        first: as_u64(first).ok_or_else(|| bad("first"))?,
        more: as_u64(more) == Some(1),
        entries: entries
            .iter()
            .map(|e| entry(e).ok_or_else(|| bad("entry")))
            .collect::<LogResult<_>>()?,
    })
}

impl RedisChatLog {
    /// Connects to `url`; every key is stored as `prefix + key`.
    pub async fn connect(url: &str, prefix: &str, cfg: LogConfig) -> LogResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(RedisChatLog {
            conn,
            prefix: prefix.to_string(),
            cfg,
            append: script(APPEND),
            read_after: script(READ_AFTER),
            history: script(HISTORY),
            top: script(TOP),
            remove: script(REMOVE),
            trim: script(TRIM),
        })
    }

    fn keys(&self, room: i64) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}chat:{{{room}}}:s"),
            format!("{p}chat:{{{room}}}:m"),
            format!("{p}chat:{{{room}}}:i"),
        ]
    }

    fn new_epoch() -> String {
        crate::ids::random_hex(4)
    }

    async fn run(&self, s: &Script, room: i64, args: &[&[u8]]) -> LogResult<Value> {
        let mut inv = s.prepare_invoke();
        for k in self.keys(room) {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }
}

#[async_trait]
impl ChatLog for RedisChatLog {
    fn config(&self) -> &LogConfig {
        &self.cfg
    }

    async fn append(&self, room: i64, e: NewEntry) -> LogResult<Appended> {
        let c = &self.cfg;
        let v = self
            .run(
                &self.append,
                room,
                &[
                    e.msg_id.as_bytes(),
                    e.kind.to_string().as_bytes(),
                    e.at_ms.to_string().as_bytes(),
                    &e.payload,
                    c.max_len.to_string().as_bytes(),
                    ms(c.max_age).to_string().as_bytes(),
                    ms(c.meta_ttl).to_string().as_bytes(),
                    Self::new_epoch().as_bytes(),
                ],
            )
            .await?;
        let Value::Array(p) = v else {
            return Err(bad("append"));
        };
        let [epoch, offset, fresh] = p.as_slice() else {
            return Err(bad("append fields"));
        };
        Ok(Appended {
            pos: Position {
                epoch: as_string(epoch).ok_or_else(|| bad("epoch"))?,
                offset: as_u64(offset).ok_or_else(|| bad("offset"))?,
            },
            fresh: as_u64(fresh) == Some(1),
        })
    }

    async fn read_after(
        &self,
        room: i64,
        after: u64,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice> {
        let c = &self.cfg;
        let v = self
            .run(
                &self.read_after,
                room,
                &[
                    format!("{}-0", after.saturating_add(1)).as_bytes(),
                    limit.to_string().as_bytes(),
                    now_ms.to_string().as_bytes(),
                    c.max_len.to_string().as_bytes(),
                    ms(c.max_age).to_string().as_bytes(),
                    ms(c.meta_ttl).to_string().as_bytes(),
                    Self::new_epoch().as_bytes(),
                ],
            )
            .await?;
        slice(v)
    }

    async fn history(
        &self,
        room: i64,
        kind: i32,
        before: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> LogResult<Slice> {
        let c = &self.cfg;
        let end = match before {
            None => "+".to_string(),
            Some(0) | Some(1) => {
                // Nothing lies below offset 1: an empty page that still tells the position.
                let mut s = self.read_after(room, u64::MAX - 1, 0, now_ms).await?;
                s.entries.clear();
                s.more = false;
                return Ok(s);
            }
            Some(b) => format!("{}-0", b - 1),
        };
        let v = self
            .run(
                &self.history,
                room,
                &[
                    kind.to_string().as_bytes(),
                    end.as_bytes(),
                    limit.to_string().as_bytes(),
                    now_ms.to_string().as_bytes(),
                    c.max_len.to_string().as_bytes(),
                    ms(c.max_age).to_string().as_bytes(),
                    ms(c.meta_ttl).to_string().as_bytes(),
                    Self::new_epoch().as_bytes(),
                ],
            )
            .await?;
        let mut s = slice(v)?;
        s.entries.reverse();
        Ok(s)
    }

    async fn top(&self, room: i64, _now_ms: i64) -> LogResult<Position> {
        let v = self
            .run(
                &self.top,
                room,
                &[
                    Self::new_epoch().as_bytes(),
                    ms(self.cfg.meta_ttl).to_string().as_bytes(),
                ],
            )
            .await?;
        let Value::Array(p) = v else {
            return Err(bad("top"));
        };
        let [epoch, offset] = p.as_slice() else {
            return Err(bad("top fields"));
        };
        Ok(Position {
            epoch: as_string(epoch).ok_or_else(|| bad("epoch"))?,
            offset: as_u64(offset).ok_or_else(|| bad("offset"))?,
        })
    }

    async fn tops(&self, rooms: &[i64]) -> LogResult<Vec<Option<Position>>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &room in rooms {
            let [_, m, _] = self.keys(room);
            pipe.cmd("HMGET").arg(m).arg("e").arg("t");
        }
        let replies: Vec<(Option<String>, Option<u64>)> =
            pipe.query_async(&mut self.conn.clone()).await?;
        Ok(replies
            .into_iter()
            .map(|(e, t)| {
                e.map(|epoch| Position {
                    epoch,
                    offset: t.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn remove(&self, room: i64, msg_ids: &[String]) -> LogResult<Vec<u64>> {
        if msg_ids.is_empty() {
            return Ok(Vec::new());
        }
        let args: Vec<&[u8]> = msg_ids.iter().map(|s| s.as_bytes()).collect();
        let v = self.run(&self.remove, room, &args).await?;
        let Value::Array(p) = v else {
            return Err(bad("remove"));
        };
        let mut gone: Vec<u64> = p.iter().filter_map(as_u64).collect();
        gone.sort_unstable();
        Ok(gone)
    }

    async fn trim(&self, room: i64, now_ms: i64) -> LogResult<usize> {
        let c = &self.cfg;
        let v = self
            .run(
                &self.trim,
                room,
                &[
                    now_ms.to_string().as_bytes(),
                    c.max_len.to_string().as_bytes(),
                    ms(c.max_age).to_string().as_bytes(),
                ],
            )
            .await?;
        Ok(as_u64(&v).unwrap_or(0) as usize)
    }
}
