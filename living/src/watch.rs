//! Viewer counts: each live room's `watch_num` follows the number of users the presence store
//! counts in the room over live gateways (design §1.4). Run by the list job (one instance, under
//! its lock, every second), which also sweeps what dead gateways left in the presence store.
//!
//! Must not: write presence, or touch a room whose count did not change.

use crate::LivingService;
use livehouse_core::presence::Presence;
use livehouse_core::time::now_ms;

/// One pass: sweeps dead gateways, then writes the rooms whose count changed. Returns how many
/// rooms were written.
pub async fn sync(service: &LivingService, presence: &dyn Presence) -> anyhow::Result<usize> {
    let now = now_ms();
    presence.sweep(now).await?;
    let rooms = service.watch_nums().await?;
    if rooms.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rooms.iter().map(|(id, _)| *id).collect();
    let counts = presence.room_counts(&ids, now).await?;
    let mut written = 0;
    for ((room, stored), count) in rooms.into_iter().zip(counts) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        if count != stored {
            service.set_watch_num(room, count).await?;
            written += 1;
        }
    }
    Ok(written)
}
