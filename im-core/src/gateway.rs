//! [`Gateway`]: one gateway instance, the parts it is made of, and the work that is not per
//! connection:
//! - the **beat** ([`Gateway::run_registration`]): every `beat_interval` the gateway tells the
//!   presence store it is alive (with its load and the rooms whose user counts changed); when
//!   the store lost its state (a Redis restart) the gateway writes its whole part again, so
//!   bindings and room counts come back within one beat;
//! - the **control** reader ([`Gateway::run_control`]): orders from other gateways (close a
//!   connection a newer login replaced);
//! - the **sweeper**: one shared timer instead of a timer per connection, for the login
//!   deadline, idle connections and ACK deadlines.
//!
//! The parts: `conns` (the local index), `fanout` (rooms and their streams), `publisher` (the
//! bus queue). Connections are served by `conn.rs` and `commands/`, accepted by `accept.rs`.
//!
//! Must not: hold a lock across an `.await`, block on a connection, or decide who receives a
//! message beyond "everyone in the room but its sender's connection".

use crate::config::ImConfig;
use crate::conns::{Conns, Kick};
use crate::fanout::{Fanout, RoomCounts, Shared};
use crate::publisher::{Job, Publisher};
use crate::stats::{Counters, GatewayStats, LagHistogram};
use bytes::Bytes;
use livehouse_core::bus::{Bus, TOPIC_CONTROL};
use livehouse_core::cache::Cache;
use livehouse_core::chatlog::ChatLog;
use livehouse_core::events::{ControlEvent, GatewayInfo, RoomBatch};
use livehouse_core::presence::{self, Presence};
use livehouse_core::time::now_ms;
use livehouse_moderation::{Enforcement, RuleBook};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The ports a gateway runs on.
#[derive(Clone)]
pub struct ImPorts {
    /// IM tokens.
    pub cache: Arc<dyn Cache>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub log: Arc<dyn ChatLog>,
    /// Moderation rules (design §3.2): the gateway's local copy, checked at login and per chat
    /// message without a round trip.
    pub moderation: Arc<RuleBook>,
}

/// One gateway instance. Shared as `Arc<Gateway>`.
pub struct Gateway {
    pub(crate) cfg: ImConfig,
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) presence: Arc<dyn Presence>,
    pub(crate) moderation: Arc<RuleBook>,
    pub(crate) conns: Conns,
    pub(crate) fanout: Fanout,
    pub(crate) publisher: Publisher,
    pub(crate) counters: Arc<Counters>,
    pub(crate) write_lag: LagHistogram,
    room_counts: Arc<RoomCounts>,
    start: tokio::time::Instant,
    next_conn: AtomicU64,
    msg_prefix: String,
    msg_seq: AtomicU64,
    me: Weak<Gateway>,
    sweeper_started: AtomicBool,
}

impl Gateway {
    /// Makes a gateway and starts its fan-out and publish tasks (call it inside a runtime).
    pub fn new(cfg: ImConfig, ports: ImPorts) -> Arc<Self> {
        let counters = Arc::new(Counters::default());
        let room_counts = Arc::new(RoomCounts::default());
        let fanout = Fanout::start(Shared {
            gateway_id: cfg.gateway_id.clone(),
            log: ports.log.clone(),
            counters: counters.clone(),
            room_counts: room_counts.clone(),
            linger: cfg.fanout_linger,
            recent_per_room: cfg.recent_per_room,
            repair_interval: cfg.repair_interval,
            moderation: ports.moderation.clone(),
        });
        let publisher = Publisher::start(ports.bus.clone(), cfg.publish_queue, counters.clone());
        let gw = Arc::new_cyclic(|me| Gateway {
            cfg,
            cache: ports.cache,
            bus: ports.bus,
            presence: ports.presence,
            moderation: ports.moderation,
            conns: Conns::new(),
            fanout,
            publisher,
            counters,
            write_lag: LagHistogram::new(),
            room_counts,
            start: tokio::time::Instant::now(),
            next_conn: AtomicU64::new(1),
            msg_prefix: livehouse_core::ids::random_hex(5),
            msg_seq: AtomicU64::new(0),
            me: me.clone(),
            sweeper_started: AtomicBool::new(false),
        });
        gw.ensure_tasks();
        gw
    }

    pub fn config(&self) -> &ImConfig {
        &self.cfg
    }

    /// Current counters.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.counters;
        let g = Counters::get;
        GatewayStats {
            connections: self.conns.open() as u64,
            sessions: self.conns.logged_in() as u64,
            delivered: g(&c.delivered),
            retried: g(&c.retried),
            unacked_dropped: g(&c.unacked_dropped),
            slow_kicked: g(&c.slow_kicked),
            idle_closed: g(&c.idle_closed),
            login_timed_out: g(&c.login_timed_out),
            chat_published: g(&c.chat_published),
            publish_failed: g(&c.publish_failed),
            events_dropped: g(&c.events_dropped),
            recover_asked: g(&c.recover_asked),
            recovered: g(&c.recovered),
            repaired: g(&c.repaired),
            lost: g(&c.lost),
            write_lag_p50_ms: self.write_lag.percentile(0.50),
            write_lag_p99_ms: self.write_lag.percentile(0.99),
        }
    }

    /// Clears the write-lag histogram (e.g. at the start of a measurement).
    pub fn reset_write_lag(&self) {
        self.write_lag.reset();
    }

    /// This gateway's record in the presence store.
    pub fn info(&self) -> GatewayInfo {
        GatewayInfo {
            id: self.cfg.gateway_id.clone(),
            ws_addr: self.cfg.ws_addr_public.clone(),
            tcp_addr: self.cfg.tcp_addr_public.clone(),
            push_url: self.cfg.push_url.clone(),
            sessions: self.conns.open() as u64,
        }
    }

    /// Milliseconds on the gateway's monotonic clock (never 0; tokio's clock, so paused time
    /// drives the protocol timers in tests).
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh message id, unique across gateways and restarts (random instance prefix + counter).
    pub(crate) fn new_msg_id(&self) -> String {
        let n = self.msg_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}{:x}", self.msg_prefix, n)
    }

    pub(crate) fn ack_ms(&self) -> u64 {
        self.cfg.ack_timeout.as_millis().max(1) as u64
    }

    /// Hands room batches to the fan-out (the in-process path of `msg`), waiting for room.
    pub async fn push(&self, batches: Vec<RoomBatch>) {
        self.ensure_tasks();
        if self.fanout.push(batches).await.is_err() {
            tracing::warn!("fan-out closed; push dropped");
        }
    }

    /// Like [`Gateway::push`] without waiting; false when the fan-out's queue was full.
    pub fn try_push(&self, batches: Vec<RoomBatch>) -> bool {
        self.ensure_tasks();
        self.fanout.try_push(batches)
    }

    /// Queues a presence or control event for the bus (retried until published).
    pub(crate) fn offer_event<T: serde::Serialize>(
        &self,
        topic: &'static str,
        key: String,
        ev: &T,
    ) {
        let job = Job {
            topic,
            key,
            payload: Bytes::from(serde_json::to_vec(ev).expect("events serialize")),
            sender: None,
        };
        if !self.publisher.offer(job) {
            Counters::add(&self.counters.events_dropped, 1);
            tracing::warn!(topic, "publish queue full: event dropped");
        }
    }

    /// Starts the sweeper once (needs a runtime; called from every entry point).
    pub(crate) fn ensure_tasks(&self) {
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = self.me.clone();
        let base = self
            .cfg
            .heartbeat_gap
            .min(self.cfg.ack_timeout)
            .min(self.cfg.login_timeout)
            / 5;
        let tick = base.clamp(Duration::from_millis(10), Duration::from_millis(500));
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(tick);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let Some(gw) = weak.upgrade() else { break };
                gw.sweep();
            }
        });
    }

    /// One sweep: closes connections not logged in within the login deadline and connections
    /// silent for two gaps; wakes those with an ACK deadline due.
    fn sweep(&self) {
        let now = self.now();
        let idle = 2 * self.cfg.heartbeat_gap.as_millis() as u64;
        let login = self.cfg.login_timeout.as_millis() as u64;
        self.conns.for_each(|c| {
            if c.kicked().is_none() {
                if !c.logged_in.load(Ordering::Relaxed) && now.saturating_sub(c.opened_at) > login {
                    Counters::add(&self.counters.login_timed_out, 1);
                    c.kick(Kick::LoginTimeout);
                } else if now.saturating_sub(c.last_seen.load(Ordering::Relaxed)) > idle {
                    Counters::add(&self.counters.idle_closed, 1);
                    c.kick(Kick::Idle);
                }
            }
            let due = c.ack_due.load(Ordering::Relaxed);
            if due != 0 && due <= now {
                c.fire_timer();
            }
        });
    }

    /// Asks every open connection to close (e.g. before the process exits).
    pub fn close_all(&self) {
        self.conns.for_each(|c| c.kick(Kick::Shutdown));
    }

    /// Beats in the presence store every `beat_interval` until `shutdown` resolves, then
    /// removes this gateway from it (see the module docs).
    pub async fn run_registration(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        self.ensure_tasks();
        tokio::pin!(shutdown);
        // A gateway started again under the same id finds nothing of its predecessor.
        if let Err(e) = self.presence.remove_gateway(&self.cfg.gateway_id).await {
            tracing::warn!(error = %e, "presence store unavailable at start");
        }
        let mut first = true;
        let mut rewrite = false;
        loop {
            let changed = self.room_counts.take_changed();
            match self.presence.beat(&self.info(), &changed, now_ms()).await {
                Ok(beat) => {
                    if (!beat.known && !first) || rewrite {
                        tracing::warn!("presence state missing: writing this gateway's part again");
                        rewrite = self.restore().await.is_err();
                    }
                    first = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway beat failed");
                    // The counts taken for it are lost: rewrite everything when it works again.
                    rewrite = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.beat_interval) => {}
                _ = &mut shutdown => break,
            }
        }
        if let Err(e) = self.presence.remove_gateway(&self.cfg.gateway_id).await {
            tracing::warn!(error = %e, "gateway removal failed");
        }
    }

    /// Writes this gateway's whole part of the presence store again.
    async fn restore(&self) -> Result<(), presence::PresenceError> {
        let id = &self.cfg.gateway_id;
        let conns: Vec<presence::Conn> = self
            .conns
            .all_logins()
            .into_iter()
            .map(|(user, l)| presence::Conn {
                gateway: id.clone(),
                conn: l.conn.id,
                user,
                device: l.device.to_string(),
                room: l.room,
                at_ms: l.at_ms,
            })
            .collect();
        let r = self
            .presence
            .restore(id, &conns, &self.room_counts.all())
            .await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "presence restore failed; retried next beat");
        }
        r
    }

    /// Follows the moderation rules (their topic, in a tail group of this gateway, and a refresh
    /// every `every`) until `shutdown`, closing the connections a ban or a suspension ends.
    pub async fn run_moderation(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let group = format!("moderation-{}", self.cfg.gateway_id);
        let weak = self.me.clone();
        tokio::pin!(shutdown);
        loop {
            let w = weak.clone();
            let enforce = move |e: Enforcement| {
                if let Some(gw) = w.upgrade() {
                    gw.enforce(e);
                }
            };
            let follow = self.moderation.clone().follow(
                self.bus.clone(),
                &group,
                every,
                enforce,
                std::future::pending::<()>(),
            );
            tokio::select! {
                _ = &mut shutdown => return,
                r = follow => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "moderation topic unavailable; following again");
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Closes the connections a moderation event ends.
    pub(crate) fn enforce(&self, e: Enforcement) {
        match e {
            Enforcement::CloseUserInRoom { room_id, user_id } => {
                for l in self.conns.user_logins(user_id) {
                    if l.room == Some(room_id) {
                        l.conn.kick(Kick::Banned);
                    }
                }
            }
            Enforcement::CloseUser { user_id } => {
                for l in self.conns.user_logins(user_id) {
                    l.conn.kick(Kick::Suspended);
                }
            }
            Enforcement::RoomClosed { .. } | Enforcement::Nothing => {}
        }
    }

    /// Reads the control topic (its own tail group) until `shutdown`; closes the connections
    /// other gateways' logins displaced.
    pub async fn run_control(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let group = format!("gw-control-{}", self.cfg.gateway_id);
        let mut sub = self.bus.subscribe_tail(TOPIC_CONTROL, &group).await?;
        tokio::pin!(shutdown);
        loop {
            let d = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                d = sub.next() => d,
            };
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "control subscription error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match serde_json::from_slice::<ControlEvent>(&d.payload) {
                Ok(ControlEvent::Replace { gateway_id, conn }) => {
                    if gateway_id == self.cfg.gateway_id {
                        if let Some(c) = self.conns.get(conn) {
                            c.kick(Kick::Replaced);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable control event"),
            }
            let _ = sub.commit(&d).await;
        }
    }
}
