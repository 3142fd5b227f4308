//! The scheduled job that keeps the room lists fresh: every second, whoever takes the lock
//! (set-if-absent with expiry in the cache, so one instance runs it) updates the rooms' viewer
//! counts from the presence store ([`crate::watch::sync`]), then rebuilds each type's list
//! into a temporary list and renames it over the live one ([`crate::LivingService::rebuild_lists`]).
//!
//! Must not: serve reads (that is [`crate::LivingService::list`]).

use crate::LivingService;
use livehouse_core::ids;
use livehouse_core::presence::Presence;
use std::future::Future;
use std::time::Duration;

pub const LOCK_KEY: &str = "living:list:lock";
/// How often the lists are rebuilt.
pub const PERIOD: Duration = Duration::from_secs(1);
/// The lock outlives a slow rebuild a little, but expires before the next tick of a peer.
const LOCK_TTL: Duration = Duration::from_millis(900);

/// One tick: takes the lock and rebuilds. Returns whether this instance did the work.
pub async fn tick(service: &LivingService, presence: Option<&dyn Presence>, owner: &str) -> bool {
    match service.cache().set_nx(LOCK_KEY, owner, LOCK_TTL).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "room list lock unavailable");
            return false;
        }
    }
    let started = std::time::Instant::now();
    if let Some(p) = presence {
        if let Err(e) = crate::watch::sync(service, p).await {
            tracing::warn!(error = %e, "viewer counts not updated");
        }
    }
    let result = service.rebuild_lists().await;
    metrics::histogram!("livehouse_room_list_rebuild_seconds")
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        tracing::warn!(error = %e, "room list rebuild failed");
    }
    true
}

/// Runs [`tick`] every [`PERIOD`] until `shutdown` resolves.
pub async fn run(
    service: LivingService,
    presence: Option<std::sync::Arc<dyn Presence>>,
    shutdown: impl Future<Output = ()>,
) {
    let owner = ids::random_hex(8);
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => { tick(&service, presence.as_deref(), &owner).await; }
        }
    }
}
