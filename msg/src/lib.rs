//! # livehouse-msg
//!
//! The chat fan-out role. It consumes chat messages from the bus ([`TOPIC_CHAT`], group `msg`),
//! drops redelivered duplicates by `msgId`, finds the room's members and the gateway each one is
//! bound to, and sends **one [`PushBatch`] per gateway** (the message plus its receivers; the
//! sender is left out) through a [`GatewayDelivery`]; then it commits the message
//! (at-least-once).
//!
//! Cost per chat message is O(gateways) deliveries and no cache round trip at steady state: the
//! members → gateway map of each room lives in a local [`view::View`], kept current from the
//! online/offline topics (a tail group unique to this instance, so every instance sees every
//! presence event) and resynced from the cache (`living`'s member set plus the user → gateway
//! bindings) when a room gets its first message and every [`MsgConfig::resync_every`] while it
//! has chat.
//!
//! Must not: write room membership (that is `living`'s), talk to clients (the gateways do), or
//! keep state beyond the online users and the rooms with recent chat.

pub mod dedup;
pub mod delivery;
pub mod view;

use anyhow::Context as _;
use livehouse_core::bus::{Bus, Delivery, Subscription, TOPIC_CHAT, TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, ChatEvent, PresenceEvent, PushBatch};
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use delivery::{GatewayDelivery, HttpDelivery};
use view::{Presence, View};

/// Consumer group of the chat topic: the `msg` instances share the chat messages.
pub const CHAT_GROUP: &str = "msg";
/// Keys per `get_many` call when a room is read from the cache.
const SNAPSHOT_CHUNK: usize = 1000;
/// Pause before retrying after a bus or cache error.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Tuning of the fan-out; [`Default`] suits production and tests alike.
#[derive(Debug, Clone)]
pub struct MsgConfig {
    /// How often the view of each room with recent chat is resynced from the cache.
    pub resync_every: Duration,
    /// A room with a chat message within this window is kept in sync; older ones are loaded
    /// again on their next message.
    pub active_window: Duration,
    /// How long a presence event overrides a cache snapshot (the cache may lag behind).
    pub settle: Duration,
    /// How many recent msgIds are remembered to drop duplicates.
    pub dedup_capacity: usize,
    /// A chat message older than this (by its `sentAtMs`) is dropped, not pushed: after a long
    /// outage, or when a new group starts at the oldest retained message, stale chat is noise.
    pub max_age: Duration,
    /// Names this instance's presence group (`msg-view-<instance>`); random by default.
    pub instance: String,
}

impl Default for MsgConfig {
    fn default() -> Self {
        MsgConfig {
            resync_every: Duration::from_secs(3),
            active_window: Duration::from_secs(300),
            settle: Duration::from_secs(10),
            dedup_capacity: 100_000,
            max_age: Duration::from_secs(60),
            instance: livehouse_core::ids::random_hex(6),
        }
    }
}

/// A subscribed `msg` instance; [`Msg::run`] serves until shutdown.
pub struct Msg {
    config: MsgConfig,
    cache: Arc<dyn Cache>,
    delivery: Arc<dyn GatewayDelivery>,
    view: Arc<Mutex<View>>,
    chat: Box<dyn Subscription>,
    online: Box<dyn Subscription>,
    offline: Box<dyn Subscription>,
}

/// Subscribes with [`MsgConfig::default`] and serves until `shutdown` resolves.
pub async fn run(
    bus: Arc<dyn Bus>,
    cache: Arc<dyn Cache>,
    delivery: Arc<dyn GatewayDelivery>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    Msg::subscribe(MsgConfig::default(), bus, cache, delivery)
        .await?
        .run(shutdown)
        .await
}

impl Msg {
    /// Joins the chat group and this instance's presence groups. Presence events published
    /// after this returns are seen.
    pub async fn subscribe(
        config: MsgConfig,
        bus: Arc<dyn Bus>,
        cache: Arc<dyn Cache>,
        delivery: Arc<dyn GatewayDelivery>,
    ) -> anyhow::Result<Msg> {
        let view_group = format!("msg-view-{}", config.instance);
        let online = bus
            .subscribe_tail(TOPIC_ONLINE, &view_group)
            .await
            .context("online")?;
        let offline = bus
            .subscribe_tail(TOPIC_OFFLINE, &view_group)
            .await
            .context("offline")?;
        let chat = bus
            .subscribe(TOPIC_CHAT, CHAT_GROUP)
            .await
            .context("chat")?;
        Ok(Msg {
            view: Arc::new(Mutex::new(View::new(config.settle))),
            config,
            cache,
            delivery,
            chat,
            online,
            offline,
        })
    }

    /// Serves until `shutdown` resolves. A message being handled then is not committed and comes
    /// again to the group.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Msg {
            config,
            cache,
            delivery,
            view,
            chat,
            online,
            offline,
        } = self;
        let fanout = Fanout {
            cache,
            delivery,
            view: view.clone(),
        };
        tracing::info!(instance = %config.instance, "msg: fan-out running");
        tokio::select! {
            _ = shutdown => Ok(()),
            r = chat_loop(&fanout, chat, &config) => r,
            r = presence_loop(&view, online, offline) => r,
            r = resync_loop(&fanout, &config) => r,
        }
    }
}

struct Fanout {
    cache: Arc<dyn Cache>,
    delivery: Arc<dyn GatewayDelivery>,
    view: Arc<Mutex<View>>,
}

impl Fanout {
    /// Reads the room's members and their gateways from the cache and merges them into the view.
    async fn resync(&self, room_id: i64) -> anyhow::Result<()> {
        let started = Instant::now();
        let ids = self.cache.set_members(&keys::room_members(room_id)).await?;
        let users: Vec<i64> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        let mut snapshot = Vec::with_capacity(users.len());
        for chunk in users.chunks(SNAPSHOT_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|u| keys::user_gateway(*u)).collect();
            let gws = self.cache.get_many(&keys).await?;
            snapshot.extend(chunk.iter().zip(gws).filter_map(|(u, g)| Some((*u, g?))));
        }
        self.view
            .lock()
            .merge_snapshot(room_id, snapshot, started, Instant::now());
        Ok(())
    }

    /// Sends the message to every gateway with receivers in the room, one batch each, all at
    /// once. A gateway that fails is logged and skipped.
    async fn handle(&self, ev: &ChatEvent) -> anyhow::Result<()> {
        let needs = {
            let mut v = self.view.lock();
            v.touch_chat(ev.room_id, Instant::now());
            v.needs_snapshot(ev.room_id)
        };
        if needs {
            self.resync(ev.room_id).await?;
        }
        let targets = self.view.lock().targets(ev.room_id, ev.sender_id);
        metrics::counter!("msg_chat_messages_total").increment(1);
        let sends = targets.into_iter().map(|(gw, receivers)| {
            let batch = PushBatch { receivers, msg: ev.clone() };
            async move {
                let n = batch.receivers.len();
                match self.delivery.deliver(&gw, batch).await {
                    Ok(()) => {
                        metrics::counter!("msg_push_batches_total").increment(1);
                        metrics::counter!("msg_push_receivers_total").increment(n as u64);
                    }
                    Err(e) => {
                        metrics::counter!("msg_push_failures_total").increment(1);
                        tracing::warn!(gateway = %gw, msg_id = %ev.msg_id, error = %e, "push failed");
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
        Ok(())
    }
}

async fn next_or_backoff(sub: &mut Box<dyn Subscription>, what: &str) -> Option<Delivery> {
    match sub.next().await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "msg: {what} subscription error");
            tokio::time::sleep(RETRY_BACKOFF).await;
            None
        }
    }
}

async fn commit(sub: &mut Box<dyn Subscription>, d: &Delivery) {
    if let Err(e) = sub.commit(d).await {
        tracing::warn!(error = %e, topic = %d.topic, "msg: commit failed (will be redelivered)");
    }
}

async fn chat_loop(
    fanout: &Fanout,
    mut sub: Box<dyn Subscription>,
    config: &MsgConfig,
) -> anyhow::Result<()> {
    let mut seen = dedup::Dedup::new(config.dedup_capacity);
    let max_age_ms = config.max_age.as_millis() as i64;
    loop {
        let Some(d) = next_or_backoff(&mut sub, "chat").await else {
            continue;
        };
        let ev: ChatEvent = match serde_json::from_slice(&d.payload) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, offset = d.offset, "msg: unreadable chat event dropped");
                commit(&mut sub, &d).await;
                continue;
            }
        };
        if seen.contains(&ev.msg_id) {
            metrics::counter!("msg_duplicates_dropped_total").increment(1);
            commit(&mut sub, &d).await;
            continue;
        }
        if livehouse_core::time::now_ms() - ev.sent_at_ms > max_age_ms {
            metrics::counter!("msg_stale_dropped_total").increment(1);
            tracing::debug!(msg_id = %ev.msg_id, "msg: stale chat message dropped");
            commit(&mut sub, &d).await;
            continue;
        }
        // The cache may be down: keep this message (order per room) until it can be handled.
        while let Err(e) = fanout.handle(&ev).await {
            tracing::warn!(error = %e, msg_id = %ev.msg_id, "msg: cannot resolve receivers; retrying");
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        seen.insert(&ev.msg_id);
        commit(&mut sub, &d).await;
    }
}

async fn presence_loop(
    view: &Mutex<View>,
    mut online: Box<dyn Subscription>,
    mut offline: Box<dyn Subscription>,
) -> anyhow::Result<()> {
    loop {
        let (kind, d, sub) = tokio::select! {
            r = online.next() => (Presence::Online, r, &mut online),
            r = offline.next() => (Presence::Offline, r, &mut offline),
        };
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "msg: presence subscription error");
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        match serde_json::from_slice::<PresenceEvent>(&d.payload) {
            Ok(ev) => view.lock().apply(kind, &ev, Instant::now()),
            Err(e) => tracing::warn!(error = %e, "msg: unreadable presence event dropped"),
        }
        // A tail group needs no commit on Kafka, but the memory bus frees buffer room on it.
        commit(sub, &d).await;
    }
}

async fn resync_loop(fanout: &Fanout, config: &MsgConfig) -> anyhow::Result<()> {
    let first = tokio::time::Instant::now() + config.resync_every;
    let mut tick = tokio::time::interval_at(first, config.resync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due = fanout
            .view
            .lock()
            .housekeep(config.active_window, Instant::now());
        for room in due {
            if let Err(e) = fanout.resync(room).await {
                tracing::warn!(room, error = %e, "msg: resync failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
