//! The repair job: every [`PERIOD`], whoever takes the lock rereads from SQL the rule-set
//! version of every live room whose anchor has moderation state, and rewrites the rule set of
//! each room whose cache copy is missing or older (a lost write, a flushed Redis). Gateways then
//! pick it up on their next refresh.
//!
//! Must not: write rules that SQL does not hold (it only calls `publish_rules`).

use super::ModerationService;
use livehouse_moderation::store;
use sea_orm::{ConnectionTrait, Statement};
use std::future::Future;
use std::time::Duration;

pub const LOCK_KEY: &str = "moderation:sync:lock";
/// How often the cache is checked against SQL.
pub const PERIOD: Duration = Duration::from_secs(5);
const LOCK_TTL: Duration = Duration::from_millis(4500);

/// One pass: returns how many rooms were rewritten (`None` when another instance holds the
/// lock).
pub async fn tick(svc: &ModerationService, owner: &str) -> Option<usize> {
    let cache = svc.living().cache().clone();
    match cache.set_nx(LOCK_KEY, owner, LOCK_TTL).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "moderation sync lock unavailable");
            return None;
        }
    }
    match repair(svc).await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "moderation sync failed");
            Some(0)
        }
    }
}

async fn repair(svc: &ModerationService) -> anyhow::Result<usize> {
    let db = svc.living().db();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT r.id, r.anchor_id, c.version FROM t_living_room r \
             JOIN t_moderation_channel c ON c.anchor_id = r.anchor_id",
        ))
        .await?;
    let mut rooms = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get_by_index(0)?;
        let anchor: i64 = r.try_get_by_index(1)?;
        let version: i64 = r.try_get_by_index(2)?;
        rooms.push((id, anchor, version.max(0) as u64));
    }
    let ids: Vec<i64> = rooms.iter().map(|r| r.0).collect();
    let cached = store::read_many(svc.living().cache().as_ref(), &ids).await?;
    let mut fixed = 0;
    for ((room_id, anchor_id, version), have) in rooms.into_iter().zip(cached) {
        if have.is_none_or(|h| h.version < version) {
            svc.publish_rules(room_id, anchor_id).await?;
            fixed += 1;
        }
    }
    if fixed > 0 {
        tracing::info!(fixed, "moderation rules repaired in the cache");
    }
    Ok(fixed)
}

/// Runs [`tick`] every [`PERIOD`] until `shutdown` resolves.
pub async fn run(svc: ModerationService, shutdown: impl Future<Output = ()>) {
    let owner = livehouse_core::ids::random_hex(8);
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => { tick(&svc, &owner).await; }
        }
    }
}
