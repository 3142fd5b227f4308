//! Redis adapter of the presence port. Keys (with the adapter's prefix):
//! - `pr:gws`: sorted set gateway id → last beat (epoch ms): the liveness rule reads it;
//! - `pr:gw:<id>`: hash `info` (GatewayInfo JSON) and `mark` (this gateway's state is here);
//!   `pr:gw:<id>:users` and `pr:gw:<id>:rooms`: what the gateway wrote, for sweeping it;
//! - `pr:u:<user>`: hash `<gateway>/<conn>` → `[device, room, at_ms]` (JSON);
//! - `pr:r:<room>`: hash gateway → users there.
//!
//! Operations that read and write together are Lua scripts (atomic). Keys are built inside the
//! scripts from the prefix, so this adapter expects a single Redis server (not a cluster).

use super::{ms, Beat, Conn, Presence, PresenceConfig, PresenceError, PresenceResult};
use crate::events::GatewayInfo;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

/// Removes everything gateway `id` wrote; appends the rooms it had counts in to `rooms`.
const DROP_GATEWAY: &str = r#"
local function drop_gateway(p, id, rooms)
  local g = p .. 'pr:gw:' .. id
  for _, room in ipairs(redis.call('SMEMBERS', g .. ':rooms')) do
    if redis.call('HDEL', p .. 'pr:r:' .. room, id) == 1 then table.insert(rooms, room) end
  end
  local prefix = id .. '/'
  for _, user in ipairs(redis.call('SMEMBERS', g .. ':users')) do
    local u = p .. 'pr:u:' .. user
    for _, f in ipairs(redis.call('HKEYS', u)) do
      if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', u, f) end
    end
  end
  redis.call('DEL', g, g .. ':rooms', g .. ':users')
  redis.call('ZREM', p .. 'pr:gws', id)
end
"#;

/// ARGV: prefix, id, info JSON, now, then (room, count) pairs.
const BEAT: &str = r#"
local p, id = ARGV[1], ARGV[2]
local g = p .. 'pr:gw:' .. id
local known = redis.call('HEXISTS', g, 'mark')
redis.call('HSET', g, 'mark', 1, 'info', ARGV[3])
redis.call('ZADD', p .. 'pr:gws', ARGV[4], id)
for i = 5, #ARGV, 2 do
  local room, n = ARGV[i], tonumber(ARGV[i + 1])
  if n > 0 then
    redis.call('HSET', p .. 'pr:r:' .. room, id, n)
    redis.call('SADD', g .. ':rooms', room)
  else
    redis.call('HDEL', p .. 'pr:r:' .. room, id)
    redis.call('SREM', g .. ':rooms', room)
  end
end
return known
"#;

/// ARGV: prefix, live_from.
const GATEWAYS: &str = r#"
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'pr:gws', '(' .. ARGV[2], '+inf')) do
  local info = redis.call('HGET', p .. 'pr:gw:' .. id, 'info')
  if info then table.insert(out, info) end
end
return out
"#;

/// ARGV: prefix, gateway, conn, user, device, room ('' for none), at, max, live_from.
const JOIN: &str = r#"
local p, gw, conn, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local device, room, at = ARGV[5], ARGV[6], tonumber(ARGV[7])
local max, live_from = tonumber(ARGV[8]), tonumber(ARGV[9])
local u = p .. 'pr:u:' .. user
local fields = redis.call('HGETALL', u)
local displaced, kept = {}, {}
for i = 1, #fields, 2 do
  local f, v = fields[i], fields[i + 1]
  local g = string.match(f, '^(.*)/%d+$')
  local score = g and redis.call('ZSCORE', p .. 'pr:gws', g)
  local d = cjson.decode(v)
  if (not score) or tonumber(score) <= live_from then
    redis.call('HDEL', u, f)
  elseif d[1] == device and d[2] == room then
    redis.call('HDEL', u, f)
    table.insert(displaced, f)
    table.insert(displaced, v)
  else
    table.insert(kept, {f, v, tonumber(d[3])})
  end
end
redis.call('HSET', u, gw .. '/' .. conn, cjson.encode({device, room, at}))
redis.call('SADD', p .. 'pr:gw:' .. gw .. ':users', user)
while #kept + 1 > max do
  local oldest = 1
  for j = 2, #kept do
    if kept[j][3] < kept[oldest][3] then oldest = j end
  end
  redis.call('HDEL', u, kept[oldest][1])
  table.insert(displaced, kept[oldest][1])
  table.insert(displaced, kept[oldest][2])
  table.remove(kept, oldest)
end
return displaced
"#;

/// ARGV: prefix, gateway, conn, user.
const LEAVE: &str = r#"
local p, gw, user = ARGV[1], ARGV[2], ARGV[4]
local u = p .. 'pr:u:' .. user
redis.call('HDEL', u, gw .. '/' .. ARGV[3])
local prefix = gw .. '/'
for _, f in ipairs(redis.call('HKEYS', u)) do
  if string.sub(f, 1, #prefix) == prefix then return 0 end
end
redis.call('SREM', p .. 'pr:gw:' .. gw .. ':users', user)
return 1
"#;

/// ARGV: prefix, user, live_from. Returns field, value pairs of live connections.
const USER_CONNS: &str = r#"
local p, live_from = ARGV[1], tonumber(ARGV[3])
local fields = redis.call('HGETALL', p .. 'pr:u:' .. ARGV[2])
local out = {}
for i = 1, #fields, 2 do
  local g = string.match(fields[i], '^(.*)/%d+$')
  local score = g and redis.call('ZSCORE', p .. 'pr:gws', g)
  if score and tonumber(score) > live_from then
    table.insert(out, fields[i])
    table.insert(out, fields[i + 1])
  end
end
return out
"#;

/// ARGV: prefix, live_from, rooms... Returns, per room, gateway/count pairs of live gateways.
const ROOMS: &str = r#"
local p, live_from = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local fields = redis.call('HGETALL', p .. 'pr:r:' .. ARGV[i])
  local live = {}
  for j = 1, #fields, 2 do
    local score = redis.call('ZSCORE', p .. 'pr:gws', fields[j])
    if score and tonumber(score) > live_from and tonumber(fields[j + 1]) > 0 then
      table.insert(live, fields[j])
      table.insert(live, fields[j + 1])
    end
  end
  table.insert(out, live)
end
return out
"#;

/// ARGV: prefix, dead_before. Returns the rooms whose counts changed.
const SWEEP: &str = r#"
local p = ARGV[1]
local rooms = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'pr:gws', '-inf', ARGV[2])) do
  drop_gateway(p, id, rooms)
end
return rooms
"#;

/// ARGV: prefix, id.
const REMOVE: &str = r#"
local rooms = {}
drop_gateway(ARGV[1], ARGV[2], rooms)
return #rooms
"#;

/// ARGV: prefix, gateway, n_conns, then per conn (conn, user, value), then (room, count) pairs.
const RESTORE: &str = r#"
local p, gw, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local g = p .. 'pr:gw:' .. gw
local i = 4
for _ = 1, n do
  local conn, user, v = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSETNX', p .. 'pr:u:' .. user, gw .. '/' .. conn, v)
  redis.call('SADD', g .. ':users', user)
  i = i + 3
end
local have = {}
for j = i, #ARGV, 2 do have[ARGV[j]] = tonumber(ARGV[j + 1]) end
for _, room in ipairs(redis.call('SMEMBERS', g .. ':rooms')) do
  if not have[room] then
    redis.call('HDEL', p .. 'pr:r:' .. room, gw)
    redis.call('SREM', g .. ':rooms', room)
  end
end
for room, c in pairs(have) do
  if c > 0 then
    redis.call('HSET', p .. 'pr:r:' .. room, gw, c)
    redis.call('SADD', g .. ':rooms', room)
  end
end
return 1
"#;

/// The distributed presence store.
#[derive(Clone)]
pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    cfg: PresenceConfig,
    scripts: Scripts,
}

#[derive(Clone)]
struct Scripts {
    beat: Script,
    gateways: Script,
    join: Script,
    leave: Script,
    user_conns: Script,
    rooms: Script,
    sweep: Script,
    remove: Script,
    restore: Script,
}

fn bad(what: &str) -> PresenceError {
    PresenceError::Backend(format!("unexpected presence data: {what}"))
}

/// `<gateway>/<conn>` and `[device, room, at]` back into a connection.
fn conn_of(user: i64, field: &str, value: &str) -> PresenceResult<Conn> {
    let (gateway, conn) = field.rsplit_once('/').ok_or_else(|| bad(field))?;
    let (device, room, at_ms): (String, String, i64) =
        serde_json::from_str(value).map_err(|_| bad(value))?;
    Ok(Conn {
        gateway: gateway.to_string(),
        conn: conn.parse().map_err(|_| bad(field))?,
        user,
        device,
        room: if room.is_empty() {
            None
        } else {
            Some(room.parse().map_err(|_| bad(value))?)
        },
        at_ms,
    })
}

fn value_of(c: &Conn) -> String {
    serde_json::to_string(&(
        &c.device,
        c.room.map(|r| r.to_string()).unwrap_or_default(),
        c.at_ms,
    ))
    .expect("plain values serialize")
}

fn pairs(v: Vec<String>) -> Vec<(String, String)> {
    v.chunks_exact(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

impl RedisPresence {
    /// Connects to `url`; every key is stored as `prefix + key`.
    pub async fn connect(url: &str, prefix: &str, cfg: PresenceConfig) -> PresenceResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        let with_drop = |body: &str| Script::new(&format!("{DROP_GATEWAY}\n{body}"));
        Ok(RedisPresence {
            conn,
            prefix: prefix.to_string(),
            cfg,
            scripts: Scripts {
                beat: Script::new(BEAT),
                gateways: Script::new(GATEWAYS),
                join: Script::new(JOIN),
                leave: Script::new(LEAVE),
                user_conns: Script::new(USER_CONNS),
                rooms: Script::new(ROOMS),
                sweep: with_drop(SWEEP),
                remove: with_drop(REMOVE),
                restore: Script::new(RESTORE),
            },
        })
    }

    fn live_from(&self, now_ms: i64) -> i64 {
        now_ms - ms(self.cfg.live_window)
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        s: &Script,
        args: Vec<String>,
    ) -> PresenceResult<T> {
        let mut inv = s.prepare_invoke();
        inv.arg(&self.prefix);
        for a in args {
            inv.arg(a);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    async fn rooms(&self, rooms: &[i64], now_ms: i64) -> PresenceResult<Vec<Vec<(String, u64)>>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![self.live_from(now_ms).to_string()];
        args.extend(rooms.iter().map(|r| r.to_string()));
        let per_room: Vec<Vec<String>> = self.call(&self.scripts.rooms, args).await?;
        per_room
            .into_iter()
            .map(|v| {
                pairs(v)
                    .into_iter()
                    .map(|(g, n)| Ok((g, n.parse().map_err(|_| bad(&n))?)))
                    .collect()
            })
            .collect()
    }
}

#[async_trait]
impl Presence for RedisPresence {
    fn config(&self) -> &PresenceConfig {
        &self.cfg
    }

    async fn beat(
        &self,
        info: &GatewayInfo,
        room_counts: &[(i64, u64)],
        now_ms: i64,
    ) -> PresenceResult<Beat> {
        let mut args = vec![
            info.id.clone(),
            serde_json::to_string(info).map_err(|e| bad(&e.to_string()))?,
            now_ms.to_string(),
        ];
        for (room, n) in room_counts {
            args.push(room.to_string());
            args.push(n.to_string());
        }
        let known: i64 = self.call(&self.scripts.beat, args).await?;
        Ok(Beat { known: known == 1 })
    }

    async fn remove_gateway(&self, gateway: &str) -> PresenceResult<()> {
        let _: i64 = self
            .call(&self.scripts.remove, vec![gateway.to_string()])
            .await?;
        Ok(())
    }

    async fn gateways(&self, now_ms: i64) -> PresenceResult<Vec<GatewayInfo>> {
        let infos: Vec<String> = self
            .call(
                &self.scripts.gateways,
                vec![self.live_from(now_ms).to_string()],
            )
            .await?;
        let mut v: Vec<GatewayInfo> = infos
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn join(&self, c: &Conn, max_per_user: usize, now_ms: i64) -> PresenceResult<Vec<Conn>> {
        let value = value_of(c);
        let (device, room, _): (String, String, i64) =
            serde_json::from_str(&value).expect("just made");
        let displaced: Vec<String> = self
            .call(
                &self.scripts.join,
                vec![
                    c.gateway.clone(),
                    c.conn.to_string(),
                    c.user.to_string(),
                    device,
                    room,
                    c.at_ms.to_string(),
                    max_per_user.max(1).to_string(),
                    self.live_from(now_ms).to_string(),
                ],
            )
            .await?;
        pairs(displaced)
            .iter()
            .map(|(f, v)| conn_of(c.user, f, v))
            .collect()
    }

    async fn leave(&self, c: &Conn) -> PresenceResult<()> {
        let _: i64 = self
            .call(
                &self.scripts.leave,
                vec![c.gateway.clone(), c.conn.to_string(), c.user.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn user_conns(&self, user: i64, now_ms: i64) -> PresenceResult<Vec<Conn>> {
        let raw: Vec<String> = self
            .call(
                &self.scripts.user_conns,
                vec![user.to_string(), self.live_from(now_ms).to_string()],
            )
            .await?;
        let mut v = pairs(raw)
            .iter()
            .map(|(f, v)| conn_of(user, f, v))
            .collect::<PresenceResult<Vec<_>>>()?;
        v.sort_by_key(|c| (c.at_ms, c.gateway.clone(), c.conn));
        Ok(v)
    }

    async fn room_gateways(&self, room: i64, now_ms: i64) -> PresenceResult<Vec<(String, u64)>> {
        let mut v = self.rooms(&[room], now_ms).await?.pop().unwrap_or_default();
        v.sort();
        Ok(v)
    }

    async fn room_counts(&self, rooms: &[i64], now_ms: i64) -> PresenceResult<Vec<u64>> {
        Ok(self
            .rooms(rooms, now_ms)
            .await?
            .into_iter()
            .map(|v| v.iter().map(|(_, n)| n).sum())
            .collect())
    }

    async fn restore(
        &self,
        gateway: &str,
        conns: &[Conn],
        room_counts: &[(i64, u64)],
    ) -> PresenceResult<()> {
        let mine: Vec<&Conn> = conns.iter().filter(|c| c.gateway == gateway).collect();
        let mut args = vec![gateway.to_string(), mine.len().to_string()];
        for c in mine {
            args.push(c.conn.to_string());
            args.push(c.user.to_string());
            args.push(value_of(c));
        }
        for (room, n) in room_counts {
            args.push(room.to_string());
            args.push(n.to_string());
        }
        let _: i64 = self.call(&self.scripts.restore, args).await?;
        Ok(())
    }

    async fn sweep(&self, now_ms: i64) -> PresenceResult<Vec<i64>> {
        let dead_before = now_ms - 2 * ms(self.cfg.live_window);
        let rooms: Vec<String> = self
            .call(&self.scripts.sweep, vec![dead_before.to_string()])
            .await?;
        let mut v: Vec<i64> = rooms.iter().filter_map(|r| r.parse().ok()).collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
}
