//! The cache-side records of the IM system, and the functions the api role calls:
//! IM tokens (`keys::im_token`, 5 min), the gateway registry (`keys::GATEWAYS` sorted by last
//! heartbeat + `keys::gateway_info`), user → gateway bindings (`keys::user_gateway`) and the
//! online heartbeat shards (`keys::online_shard`).
//!
//! Must not: hold state in memory; everything here is a few cache calls.

use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, GatewayInfo};
use livehouse_core::time::now_ms;
use std::time::Duration;

/// Lifetime of an IM token.
pub const IM_TOKEN_TTL: Duration = Duration::from_secs(300);
/// A gateway whose last registration is older than this is not offered to clients.
pub const GATEWAY_LIVE_WINDOW: Duration = Duration::from_secs(15);
/// Number of online heartbeat shards (see `keys::online_shard`).
pub const ONLINE_SHARDS: i64 = 16;

/// Issues a random URL-safe IM token for `user_id`, valid for [`IM_TOKEN_TTL`].
pub async fn issue_im_token(cache: &dyn Cache, user_id: i64) -> anyhow::Result<String> {
    issue_named_im_token(cache, user_id, "").await
}

/// Like [`issue_im_token`], also carrying the user's display name, which the gateway stamps on
/// the user's chat messages (`senderName`). Stored as `<userId>` or `<userId> <name>`.
pub async fn issue_named_im_token(
    cache: &dyn Cache,
    user_id: i64,
    name: &str,
) -> anyhow::Result<String> {
    let token = livehouse_core::ids::random_hex(16);
    let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    let value = if name.is_empty() {
        user_id.to_string()
    } else {
        format!("{user_id} {name}")
    };
    cache
        .set(&keys::im_token(&token), &value, Some(IM_TOKEN_TTL))
        .await?;
    Ok(token)
}

/// The user (and display name, possibly empty) a token was issued to, if it is still valid.
pub async fn token_login(cache: &dyn Cache, token: &str) -> anyhow::Result<Option<(i64, String)>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let Some(v) = cache.get(&keys::im_token(token)).await? else {
        return Ok(None);
    };
    let (id, name) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    Ok(id.parse().ok().map(|id| (id, name.to_string())))
}

/// The user a token was issued to, if it is still valid.
pub async fn token_user(cache: &dyn Cache, token: &str) -> anyhow::Result<Option<i64>> {
    Ok(token_login(cache, token).await?.map(|(id, _)| id))
}

/// The least-loaded live gateway (fewest sessions; registered within [`GATEWAY_LIVE_WINDOW`]).
/// Trims dead gateways from the registry on the way.
pub async fn pick_gateway(cache: &dyn Cache) -> anyhow::Result<Option<GatewayInfo>> {
    let live_from = (now_ms() - GATEWAY_LIVE_WINDOW.as_millis() as i64) as f64;
    cache
        .zrem_range_by_score(keys::GATEWAYS, f64::NEG_INFINITY, live_from - 1.0)
        .await?;
    let ids = cache
        .zrange_by_score(keys::GATEWAYS, live_from, f64::INFINITY)
        .await?;
    if ids.is_empty() {
        return Ok(None);
    }
    let info_keys: Vec<String> = ids.iter().map(|(id, _)| keys::gateway_info(id)).collect();
    let infos = cache.get_many(&info_keys).await?;
    Ok(infos
        .into_iter()
        .flatten()
        .filter_map(|j| serde_json::from_str::<GatewayInfo>(&j).ok())
        .min_by_key(|g| g.sessions))
}

/// Whether `user_id` has a live session on some gateway (its binding has not expired).
pub async fn is_online(cache: &dyn Cache, user_id: i64) -> anyhow::Result<bool> {
    Ok(cache.get(&keys::user_gateway(user_id)).await?.is_some())
}

/// The gateway `user_id` is bound to, if online.
pub async fn user_gateway(cache: &dyn Cache, user_id: i64) -> anyhow::Result<Option<String>> {
    Ok(cache.get(&keys::user_gateway(user_id)).await?)
}

/// Writes a gateway's registration (info with a TTL of `ttl`, heartbeat score = now).
pub(crate) async fn register(
    cache: &dyn Cache,
    info: &GatewayInfo,
    ttl: Duration,
) -> anyhow::Result<()> {
    cache
        .set(
            &keys::gateway_info(&info.id),
            &serde_json::to_string(info)?,
            Some(ttl),
        )
        .await?;
    cache
        .zadd(keys::GATEWAYS, &info.id, now_ms() as f64)
        .await?;
    Ok(())
}

/// Removes a gateway's registration (clean shutdown).
pub(crate) async fn deregister(cache: &dyn Cache, id: &str) -> anyhow::Result<()> {
    cache.zrem(keys::GATEWAYS, id).await?;
    cache.del(&keys::gateway_info(id)).await?;
    Ok(())
}

/// Binds `user → gateway` for `ttl` and records a heartbeat in the user's online shard.
pub(crate) async fn bind_user(
    cache: &dyn Cache,
    user_id: i64,
    gateway_id: &str,
    ttl: Duration,
) -> anyhow::Result<()> {
    cache
        .set(&keys::user_gateway(user_id), gateway_id, Some(ttl))
        .await?;
    cache
        .zadd(
            &keys::online_shard(user_id),
            &user_id.to_string(),
            now_ms() as f64,
        )
        .await?;
    Ok(())
}

/// A heartbeat's refresh: extends the user's binding and records the heartbeat. Returns
/// `false` when the binding had expired (a cache outage longer than its TTL) and had to be
/// written again, so the caller can announce the session anew.
pub(crate) async fn refresh_user(
    cache: &dyn Cache,
    user_id: i64,
    gateway_id: &str,
    ttl: Duration,
) -> anyhow::Result<bool> {
    let key = keys::user_gateway(user_id);
    let alive = cache.expire(&key, ttl).await?;
    if !alive {
        cache.set(&key, gateway_id, Some(ttl)).await?;
    }
    cache
        .zadd(
            &keys::online_shard(user_id),
            &user_id.to_string(),
            now_ms() as f64,
        )
        .await?;
    Ok(alive)
}

/// Removes the binding (if it still names this gateway) and the online entry.
pub(crate) async fn unbind_user(
    cache: &dyn Cache,
    user_id: i64,
    gateway_id: &str,
) -> anyhow::Result<()> {
    cache
        .del_if_eq(&keys::user_gateway(user_id), gateway_id)
        .await?;
    cache
        .zrem(&keys::online_shard(user_id), &user_id.to_string())
        .await?;
    Ok(())
}

/// Drops online heartbeats older than `max_age` from one shard (or all with `None`).
pub(crate) async fn trim_online(
    cache: &dyn Cache,
    shard_of: Option<i64>,
    max_age: Duration,
) -> anyhow::Result<usize> {
    let before = (now_ms() - max_age.as_millis() as i64) as f64;
    let mut n = 0;
    let users: Vec<i64> = match shard_of {
        Some(u) => vec![u],
        None => (0..ONLINE_SHARDS).collect(),
    };
    for u in users {
        n += cache
            .zrem_range_by_score(&keys::online_shard(u), f64::NEG_INFINITY, before)
            .await?;
    }
    Ok(n)
}
