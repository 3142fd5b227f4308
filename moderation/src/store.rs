//! How a room's rule set lives in the cache: key [`keys::moderation_rules`]`(roomId)`, value
//! `"<version>:<RoomRules JSON>"`, written with [`Cache::set_if_newer`] so that of two writers
//! racing (two api instances), the higher version stays whatever the order of their writes.
//! A live room's rule set has no expiry; a closed room's is replaced by a closed, empty rule set
//! that expires after [`CLOSED_TTL`] (a late writer with an older version cannot bring the old
//! rules back meanwhile). An absent key reads as "no rules" (version 0).
//!
//! Must not: decide what the rules are (the writer builds them from SQL).
//!
//! [`keys::moderation_rules`]: livehouse_core::events::keys::moderation_rules

use crate::rules::RoomRules;
use livehouse_core::cache::{split_versioned, Cache, CacheResult};
use livehouse_core::events::keys;
use std::time::Duration;

/// How long the rule set of a closed room is remembered.
pub const CLOSED_TTL: Duration = Duration::from_secs(600);

/// Writes `rules` unless the cache already holds its version or a newer one. True when written.
pub async fn write(cache: &dyn Cache, rules: &RoomRules) -> CacheResult<bool> {
    let json = serde_json::to_string(rules).expect("rules serialize");
    let ttl = rules.closed.then_some(CLOSED_TTL);
    cache
        .set_if_newer(
            &keys::moderation_rules(rules.room_id),
            rules.version,
            &json,
            ttl,
        )
        .await
}

/// Parses a stored value; `None` for anything malformed (logged).
pub fn decode(room_id: i64, stored: &str) -> Option<RoomRules> {
    let Some((version, json)) = split_versioned(stored) else {
        tracing::warn!(room_id, "moderation rules in the cache carry no version");
        return None;
    };
    match serde_json::from_str::<RoomRules>(json) {
        Ok(mut r) if r.room_id == room_id => {
            r.version = version;
            Some(r)
        }
        Ok(_) => {
            tracing::warn!(room_id, "moderation rules in the cache name another room");
            None
        }
        Err(e) => {
            tracing::warn!(room_id, error = %e, "moderation rules in the cache do not parse");
            None
        }
    }
}

/// The room's rule set, or `None` when the cache has none.
pub async fn read(cache: &dyn Cache, room_id: i64) -> CacheResult<Option<RoomRules>> {
    Ok(cache
        .get(&keys::moderation_rules(room_id))
        .await?
        .and_then(|s| decode(room_id, &s)))
}

/// The rule sets of many rooms in one round trip (chunks of 1,000 keys), in order.
pub async fn read_many(cache: &dyn Cache, rooms: &[i64]) -> CacheResult<Vec<Option<RoomRules>>> {
    let mut out = Vec::with_capacity(rooms.len());
    for chunk in rooms.chunks(1000) {
        let k: Vec<String> = chunk.iter().map(|r| keys::moderation_rules(*r)).collect();
        let values = cache.get_many(&k).await?;
        out.extend(
            chunk
                .iter()
                .zip(values)
                .map(|(room, v)| v.and_then(|s| decode(*room, &s))),
        );
    }
    Ok(out)
}

/// The suspended user ids the api keeps in [`keys::SUSPENDED_USERS`].
pub async fn suspended_users(cache: &dyn Cache) -> CacheResult<Vec<i64>> {
    Ok(cache
        .set_members(keys::SUSPENDED_USERS)
        .await?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect())
}
