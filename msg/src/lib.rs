//! # livehouse-msg
//!
//! The room stream's writer and fan-out. It consumes room messages from the bus ([`TOPIC_CHAT`],
//! group `msg`; the bus is keyed by room, so one consumer handles a room's messages in order)
//! and, for each one:
//! 1. gives it its place in the room's stream: [`ChatLog::append`] (idempotent by message id:
//!    a redelivered message keeps its offset); a recall (`bizCode 5556`) first removes the
//!    messages it names from the log;
//! 2. queues it, with its offset, for every gateway serving the room ([`pusher::Pusher`]: one
//!    bounded queue per gateway, retried with backoff);
//! 3. commits it on the bus. Once in the log a message is safe: a gateway that misses a push
//!    fetches it from the log, and viewers of a gateway that died recover it when they
//!    reconnect (design §3.1).
//!
//! Cost per message is one log append and one push per gateway, no per-viewer work: which
//! gateways serve a room comes from a local [`view::View`], kept current from the online topic
//! (a tail group unique to this instance) and resynced from the presence store.
//!
//! Must not: write presence, talk to clients (the gateways do), or keep state beyond the rooms
//! with recent chat and the gateways' queues.

pub mod delivery;
pub mod pusher;
pub mod view;

use anyhow::Context as _;
use livehouse_core::bus::{Bus, Delivery, Subscription, TOPIC_CHAT, TOPIC_ONLINE};
use livehouse_core::chatlog::{ChatLog, NewEntry};
use livehouse_core::events::{ChatEvent, PresenceEvent, RoomBatch, StreamEntry};
use livehouse_core::presence::Presence;
use livehouse_core::time::now_ms;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use delivery::{GatewayDelivery, HttpDelivery, TokenSource};
use pusher::Pusher;
use view::View;

/// Consumer group of the chat topic: the `msg` instances share the rooms.
pub const CHAT_GROUP: &str = "msg";
/// `bizCode` of a recall (design §3.2): `data` `{roomId, msgIds}`.
pub const BIZ_RECALL: i32 = 5556;
/// Pause before retrying after a bus or store error.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Tuning of the fan-out; [`Default`] suits production and tests alike.
#[derive(Debug, Clone)]
pub struct MsgConfig {
    /// How often the gateways of each room with recent chat are read again from the store.
    pub resync_every: Duration,
    /// A room with a chat message within this window is kept in sync; older ones are loaded
    /// again on their next message.
    pub active_window: Duration,
    /// How long an online event counts over a snapshot (the store lags behind events).
    pub settle: Duration,
    /// How often the live gateways (and their push URLs) are read from the store.
    pub directory_every: Duration,
    /// Batches queued per gateway before the oldest are dropped (the gateway repairs).
    pub queue_per_gateway: usize,
    /// A message older than this (by `sentAtMs`) is dropped, not appended: after a long
    /// outage, or when a new group starts at the oldest retained message, stale chat is noise.
    pub max_age: Duration,
    /// Names this instance's presence group (`msg-view-<instance>`); random by default.
    pub instance: String,
}

impl Default for MsgConfig {
    fn default() -> Self {
        MsgConfig {
            resync_every: Duration::from_secs(2),
            active_window: Duration::from_secs(300),
            settle: Duration::from_secs(10),
            directory_every: Duration::from_millis(500),
            queue_per_gateway: 4096,
            max_age: Duration::from_secs(60),
            instance: livehouse_core::ids::random_hex(6),
        }
    }
}

/// The ports `msg` runs on.
#[derive(Clone)]
pub struct MsgPorts {
    pub bus: Arc<dyn Bus>,
    pub log: Arc<dyn ChatLog>,
    pub presence: Arc<dyn Presence>,
}

/// A subscribed `msg` instance; [`Msg::run`] serves until shutdown.
pub struct Msg {
    config: MsgConfig,
    ports: MsgPorts,
    pusher: Pusher,
    view: Arc<Mutex<View>>,
    chat: Box<dyn Subscription>,
    online: Box<dyn Subscription>,
}

impl Msg {
    /// Joins the chat group and this instance's online group. Online events published after
    /// this returns are seen.
    pub async fn subscribe(
        config: MsgConfig,
        ports: MsgPorts,
        delivery: Arc<dyn GatewayDelivery>,
    ) -> anyhow::Result<Msg> {
        let view_group = format!("msg-view-{}", config.instance);
        let online = ports
            .bus
            .subscribe_tail(TOPIC_ONLINE, &view_group)
            .await
            .context("online")?;
        let chat = ports
            .bus
            .subscribe(TOPIC_CHAT, CHAT_GROUP)
            .await
            .context("chat")?;
        Ok(Msg {
            view: Arc::new(Mutex::new(View::new(config.settle))),
            pusher: Pusher::new(delivery, config.queue_per_gateway),
            config,
            ports,
            chat,
            online,
        })
    }

    /// The per-gateway queues (for tests and metrics).
    pub fn pusher(&self) -> Pusher {
        self.pusher.clone()
    }

    /// Serves until `shutdown` resolves. A message being handled then is not committed and comes
    /// again to the group.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Msg {
            config,
            ports,
            pusher,
            view,
            chat,
            online,
        } = self;
        let fanout = Fanout {
            ports,
            pusher,
            view,
        };
        // The live gateways first, so the first messages find their push URLs.
        fanout.refresh_directory().await;
        tracing::info!(instance = %config.instance, "msg: fan-out running");
        tokio::select! {
            _ = shutdown => Ok(()),
            r = chat_loop(&fanout, chat, &config) => r,
            r = online_loop(&fanout.view, online) => r,
            r = resync_loop(&fanout, &config) => r,
            r = directory_loop(&fanout, &config) => r,
        }
    }
}

struct Fanout {
    ports: MsgPorts,
    pusher: Pusher,
    view: Arc<Mutex<View>>,
}

impl Fanout {
    async fn refresh_directory(&self) {
        match self.ports.presence.gateways(now_ms()).await {
            Ok(g) => self.pusher.set_live(g),
            Err(e) => {
                tracing::warn!(error = %e, "msg: presence store unavailable; keeping the last gateways")
            }
        }
    }

    /// Reads the gateways serving the room from the presence store into the view.
    async fn resync(&self, room: i64) -> anyhow::Result<()> {
        let gws = self.ports.presence.room_gateways(room, now_ms()).await?;
        self.view.lock().merge_snapshot(
            room,
            gws.into_iter().map(|(g, _)| g).collect(),
            Instant::now(),
        );
        Ok(())
    }

    /// Logs the message in its room's stream and queues it for the room's gateways.
    async fn handle(&self, ev: &ChatEvent, payload: &[u8]) -> anyhow::Result<()> {
        let log = &self.ports.log;
        if ev.biz_code == BIZ_RECALL {
            let ids = recalled_ids(&ev.data);
            let gone = log.remove(ev.room_id, &ids).await?;
            tracing::debug!(room = ev.room_id, ?gone, "recalled");
        }
        let appended = log
            .append(
                ev.room_id,
                NewEntry {
                    msg_id: ev.msg_id.clone(),
                    kind: ev.biz_code,
                    at_ms: now_ms(),
                    payload: bytes::Bytes::copy_from_slice(payload),
                },
            )
            .await?;
        metrics::counter!("msg_chat_messages_total").increment(1);
        if !appended.fresh {
            // Redelivered by the bus: it has its place already, and gateways that did not get it
            // fetch it from the log.
            metrics::counter!("msg_duplicates_total").increment(1);
            return Ok(());
        }
        let needs = {
            let mut v = self.view.lock();
            v.touch_chat(ev.room_id, Instant::now());
            v.needs_snapshot(ev.room_id)
        };
        if needs {
            if let Err(e) = self.resync(ev.room_id).await {
                // The online events still name the gateways that joined lately; the others
                // repair from the log.
                tracing::warn!(room = ev.room_id, error = %e, "msg: room's gateways unavailable");
            }
        }
        let batch = RoomBatch {
            room_id: ev.room_id,
            epoch: appended.pos.epoch,
            entries: vec![StreamEntry {
                offset: appended.pos.offset,
                msg: ev.clone(),
            }],
        };
        for gw in self.view.lock().gateways(ev.room_id) {
            self.pusher.enqueue(&gw, batch.clone());
        }
        Ok(())
    }
}

/// The message ids a recall's `data` (`{roomId, msgIds}`) names.
fn recalled_ids(data: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("msgIds")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
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
        if now_ms() - ev.sent_at_ms > max_age_ms {
            metrics::counter!("msg_stale_dropped_total").increment(1);
            tracing::debug!(msg_id = %ev.msg_id, "msg: stale chat message dropped");
            commit(&mut sub, &d).await;
            continue;
        }
        // The log may be down: keep this message (and the room's order) until it is stored.
        while let Err(e) = fanout.handle(&ev, &d.payload).await {
            tracing::warn!(error = %e, msg_id = %ev.msg_id, "msg: cannot store the message; retrying");
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        commit(&mut sub, &d).await;
    }
}

async fn online_loop(view: &Mutex<View>, mut online: Box<dyn Subscription>) -> anyhow::Result<()> {
    loop {
        let Some(d) = next_or_backoff(&mut online, "online").await else {
            continue;
        };
        match serde_json::from_slice::<PresenceEvent>(&d.payload) {
            Ok(ev) => view
                .lock()
                .online(ev.room_id, &ev.gateway_id, Instant::now()),
            Err(e) => tracing::warn!(error = %e, "msg: unreadable online event dropped"),
        }
        // A tail group needs no commit on Kafka, but the memory bus frees buffer room on it.
        commit(&mut online, &d).await;
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

async fn directory_loop(fanout: &Fanout, config: &MsgConfig) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(config.directory_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fanout.refresh_directory().await;
    }
}

#[cfg(test)]
mod tests;
