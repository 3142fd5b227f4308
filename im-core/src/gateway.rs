//! [`Gateway`]: the shared state of one gateway instance and the work that is not per
//! connection: the fan-out of pushed messages into sessions' outboxes, the sweeper (idle sessions,
//! ACK deadlines: one shared timer instead of a timer per session), the TCP accept loop and the
//! registration heartbeat in the cache.
//!
//! Fan-out: a [`PushBatch`] is encoded once per form (TCP, WebSocket) into `Bytes`; every
//! receiving session gets an `Arc` of the same frames. With `fanout_linger > 0`, batches arriving
//! within the linger are coalesced: sessions receiving the same messages share one concatenated
//! frame string, so one write carries several messages.
//!
//! Must not: hold a lock across an `.await`, block on a session (a full outbox kicks the session),
//! or decide who receives a message (the push batch says so).

use crate::hub::{Enqueue, Hub, IdMap, Kick, Outgoing, Prepared};
use crate::protocol::{self, code, ImMsgBody, Wire};
use crate::registry;
use bytes::{BufMut, BytesMut};
use livehouse_core::bus::Bus;
use livehouse_core::cache::Cache;
use livehouse_core::events::{GatewayInfo, PushBatch};
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Configuration of one gateway.
#[derive(Clone)]
pub struct ImConfig {
    /// Unique id of this gateway (registry key, binding value).
    pub gateway_id: String,
    /// TCP address clients are told to use, e.g. `127.0.0.1:8085`.
    pub tcp_addr_public: String,
    /// WebSocket URL clients are told to use, e.g. `ws://127.0.0.1:8080/ws`.
    pub ws_addr_public: String,
    /// Base URL of this gateway's HTTP server (where `msg` posts `/internal/im/push`).
    pub push_url: String,
    /// A connection that has not logged in this long after it opened is closed (design §4).
    pub login_timeout: Duration,
    /// Expected client heartbeat period; a session silent for 2 gaps is closed, and a binding
    /// lives 2 gaps unless refreshed.
    pub heartbeat_gap: Duration,
    /// Time a delivered message waits for its ACK before its single retry (and after it, before
    /// being dropped).
    pub ack_timeout: Duration,
    /// Shared secret `msg` sends in header `x-livehouse-internal`; empty disables the endpoint.
    pub internal_token: String,
    /// Period of the registration heartbeat in the cache.
    pub registration_interval: Duration,
    /// Bound of each session's outbound queue (items); overflow disconnects the session.
    pub outbox_limit: usize,
    /// Bound of each session's pending-ACK list; the oldest is dropped (not retried) when full.
    pub max_pending_acks: usize,
    /// Chat messages per second per user (also the burst).
    pub chat_rate_per_sec: u32,
    /// Coalescing window of the fan-out; zero delivers each push at once.
    pub fanout_linger: Duration,
}

impl Default for ImConfig {
    fn default() -> Self {
        ImConfig {
            gateway_id: format!("im-{}", livehouse_core::ids::random_hex(4)),
            tcp_addr_public: "127.0.0.1:8085".into(),
            ws_addr_public: "ws://127.0.0.1:8080/ws".into(),
            push_url: "http://127.0.0.1:8080".into(),
            login_timeout: Duration::from_secs(10),
            heartbeat_gap: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(4),
            internal_token: String::new(),
            registration_interval: Duration::from_secs(5),
            outbox_limit: 512,
            max_pending_acks: 256,
            chat_rate_per_sec: 5,
            fanout_linger: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for ImConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImConfig")
            .field("gateway_id", &self.gateway_id)
            .field("tcp_addr_public", &self.tcp_addr_public)
            .field("ws_addr_public", &self.ws_addr_public)
            .field("push_url", &self.push_url)
            .field("login_timeout", &self.login_timeout)
            .field("heartbeat_gap", &self.heartbeat_gap)
            .field("ack_timeout", &self.ack_timeout)
            .field(
                "internal_token",
                &if self.internal_token.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("registration_interval", &self.registration_interval)
            .field("outbox_limit", &self.outbox_limit)
            .field("max_pending_acks", &self.max_pending_acks)
            .field("chat_rate_per_sec", &self.chat_rate_per_sec)
            .field("fanout_linger", &self.fanout_linger)
            .finish()
    }
}

/// Counters since start (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Open connections now.
    pub connections: u64,
    /// Logged-in sessions now.
    pub sessions: u64,
    /// Message deliveries queued on sessions (first sends).
    pub delivered: u64,
    /// Retries sent after an ACK timeout.
    pub retried: u64,
    /// Messages dropped unacknowledged (after the retry, or pending list full).
    pub unacked_dropped: u64,
    /// Sessions disconnected because their outbound queue overflowed.
    pub slow_kicked: u64,
    /// Sessions closed for silence.
    pub idle_closed: u64,
    /// Connections closed for not logging in within the login deadline.
    pub login_timed_out: u64,
    /// Chat messages accepted and published.
    pub chat_published: u64,
    /// Time from a message's acceptance (`sentAtMs`) to its latest fan-out on this gateway, ms.
    pub last_fanout_lag_ms: u64,
    /// Time from a message's acceptance to the write of its frame to a session socket, ms
    /// (median and 99th percentile over deliveries since start or [`Gateway::reset_write_lag`]).
    pub write_lag_p50_ms: u64,
    pub write_lag_p99_ms: u64,
}

/// Histogram of delivery lags, 1 ms buckets up to [`LAG_BUCKETS`] ms (the last holds the rest).
pub(crate) struct LagHistogram {
    buckets: Box<[AtomicU64]>,
}

const LAG_BUCKETS: usize = 10_000;

impl LagHistogram {
    fn new() -> Self {
        LagHistogram {
            buckets: (0..LAG_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, ms: u64) {
        self.buckets[(ms as usize).min(LAG_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil() as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return i as u64;
            }
        }
        LAG_BUCKETS as u64
    }

    fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub unacked_dropped: AtomicU64,
    pub slow_kicked: AtomicU64,
    pub idle_closed: AtomicU64,
    pub login_timed_out: AtomicU64,
    pub chat_published: AtomicU64,
    pub last_fanout_lag_ms: AtomicU64,
}

/// One gateway instance: sessions, local index, fan-out. Shared as `Arc<Gateway>`.
pub struct Gateway {
    pub(crate) cfg: ImConfig,
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) hub: Hub,
    pub(crate) counters: Counters,
    pub(crate) write_lag: LagHistogram,
    start: Instant,
    next_session: AtomicU64,
    msg_prefix: String,
    msg_seq: AtomicU64,
    me: Weak<Gateway>,
    sweeper_started: AtomicBool,
    linger: Mutex<Linger>,
    /// Serializes fan-outs, so messages keep their order across flushes.
    delivering: Mutex<()>,
    /// Bounds the heartbeat refreshes of the cache in flight (they run beside the sessions).
    pub(crate) refreshes: Arc<tokio::sync::Semaphore>,
}

/// Most heartbeat cache refreshes in flight at once; a heartbeat finding none free skips its
/// refresh and the session retries on its next beat (the binding lives two gaps).
const MAX_REFRESHES_IN_FLIGHT: usize = 512;

#[derive(Default)]
struct Linger {
    batches: Vec<PushBatch>,
    scheduled: bool,
    /// Gateway-clock ms of the last flush.
    last_flush: u64,
}

/// Most messages coalesced into one frame string (bits of a mask).
const MAX_COALESCE: usize = 64;

impl Gateway {
    pub fn new(cfg: ImConfig, cache: Arc<dyn Cache>, bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new_cyclic(|me| Gateway {
            cfg,
            cache,
            bus,
            hub: Hub::new(),
            counters: Counters::default(),
            write_lag: LagHistogram::new(),
            start: Instant::now(),
            next_session: AtomicU64::new(1),
            msg_prefix: livehouse_core::ids::random_hex(5),
            msg_seq: AtomicU64::new(0),
            me: me.clone(),
            sweeper_started: AtomicBool::new(false),
            linger: Mutex::new(Linger::default()),
            delivering: Mutex::new(()),
            refreshes: Arc::new(tokio::sync::Semaphore::new(MAX_REFRESHES_IN_FLIGHT)),
        })
    }

    pub fn config(&self) -> &ImConfig {
        &self.cfg
    }

    /// Current counters.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.counters;
        GatewayStats {
            connections: self.hub.conn_count() as u64,
            sessions: self.hub.session_count() as u64,
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            unacked_dropped: c.unacked_dropped.load(Ordering::Relaxed),
            slow_kicked: c.slow_kicked.load(Ordering::Relaxed),
            idle_closed: c.idle_closed.load(Ordering::Relaxed),
            login_timed_out: c.login_timed_out.load(Ordering::Relaxed),
            chat_published: c.chat_published.load(Ordering::Relaxed),
            last_fanout_lag_ms: c.last_fanout_lag_ms.load(Ordering::Relaxed),
            write_lag_p50_ms: self.write_lag.percentile(0.50),
            write_lag_p99_ms: self.write_lag.percentile(0.99),
        }
    }

    /// Clears the write-lag histogram (e.g. at the start of a measurement).
    pub fn reset_write_lag(&self) {
        self.write_lag.reset();
    }

    /// This gateway's registry record.
    pub fn info(&self) -> GatewayInfo {
        GatewayInfo {
            id: self.cfg.gateway_id.clone(),
            ws_addr: self.cfg.ws_addr_public.clone(),
            tcp_addr: self.cfg.tcp_addr_public.clone(),
            push_url: self.cfg.push_url.clone(),
            sessions: self.hub.conn_count() as u64,
        }
    }

    /// Whether `user_id` has a logged-in session on this gateway.
    pub fn has_local_user(&self, user_id: i64) -> bool {
        self.hub.has_user(user_id)
    }

    /// Milliseconds on the gateway's monotonic clock (never 0).
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh message id, unique across gateways and restarts (random instance prefix + counter).
    pub(crate) fn new_msg_id(&self) -> String {
        let n = self.msg_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}{:x}", self.msg_prefix, n)
    }

    pub(crate) fn ack_ms(&self) -> u64 {
        self.cfg.ack_timeout.as_millis().max(1) as u64
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

    /// One sweep: kicks connections not logged in within the login deadline and sessions silent
    /// for two gaps, wakes those with an ACK deadline due.
    fn sweep(&self) {
        let now = self.now();
        let idle = 2 * self.cfg.heartbeat_gap.as_millis() as u64;
        let login = self.cfg.login_timeout.as_millis() as u64;
        self.hub.for_each_conn(|s| {
            if !s.logged_in.load(Ordering::Relaxed)
                && now.saturating_sub(s.opened_at) > login
                && s.kicked().is_none()
            {
                self.counters
                    .login_timed_out
                    .fetch_add(1, Ordering::Relaxed);
                s.kick(Kick::LoginTimeout);
            }
            if now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) > idle
                && s.kicked().is_none()
            {
                self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                s.kick(Kick::Idle);
            }
            let due = s.ack_due.load(Ordering::Relaxed);
            if due != 0 && due <= now {
                s.fire_timer();
            }
        });
    }

    /// Delivers a message to the local sessions of `batch.receivers` in the message's room
    /// (in-process path of the all-in-one binary; `POST /internal/im/push` calls it too).
    /// Uses `batch.msg.msg_id`, or a fresh one when it is empty. Never waits for a session.
    ///
    /// With `fanout_linger = L > 0`, fan-outs happen at most once per `L`: a message arriving
    /// when the last fan-out is older than `L` goes out at once, later ones wait for the next
    /// slot and go out together (one write per session for all of them).
    pub async fn push(&self, batch: PushBatch) {
        self.ensure_tasks();
        if self.cfg.fanout_linger.is_zero() {
            let _order = self.delivering.lock();
            self.deliver(std::slice::from_ref(&batch));
            return;
        }
        let linger_ms = self.cfg.fanout_linger.as_millis() as u64;
        let now = self.now();
        let mut l = self.linger.lock();
        if !l.scheduled && l.batches.is_empty() && now >= l.last_flush + linger_ms {
            l.last_flush = now;
            let _order = self.delivering.lock();
            drop(l);
            self.deliver(std::slice::from_ref(&batch));
            return;
        }
        l.batches.push(batch);
        if l.scheduled {
            return;
        }
        l.scheduled = true;
        let wait = (l.last_flush + linger_ms).saturating_sub(now);
        drop(l);
        let weak = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(gw) = weak.upgrade() else { return };
            let mut l = gw.linger.lock();
            let batches = std::mem::take(&mut l.batches);
            l.scheduled = false;
            l.last_flush = gw.now();
            let _order = gw.delivering.lock();
            drop(l);
            gw.deliver(&batches);
        });
    }

    fn prepare(&self, b: &PushBatch) -> Arc<Prepared> {
        let m = &b.msg;
        let msg_id = if m.msg_id.is_empty() {
            self.new_msg_id()
        } else {
            m.msg_id.clone()
        };
        let body = ImMsgBody {
            app_id: Some(m.app_id),
            user_id: Some(m.sender_id),
            biz_code: Some(m.biz_code),
            data: Some(m.data.clone()),
            msg_id: Some(msg_id.clone()),
            room_id: Some(m.room_id),
            ..Default::default()
        }
        .to_json();
        Arc::new(Prepared {
            msg_id: msg_id.into_boxed_str(),
            sent_at_ms: m.sent_at_ms,
            ws: protocol::encode(Wire::Ws, code::BIZ, &body),
            tcp: protocol::encode(Wire::Tcp, code::BIZ, &body),
        })
    }

    /// Queues `batches` on their receivers' sessions; returns the number of deliveries queued.
    pub(crate) fn deliver(&self, batches: &[PushBatch]) -> usize {
        let mut n = 0;
        if let Some(first) = batches.iter().find(|b| b.msg.sent_at_ms > 0) {
            let lag = livehouse_core::time::now_ms() - first.msg.sent_at_ms;
            self.counters
                .last_fanout_lag_ms
                .store(lag.max(0) as u64, Ordering::Relaxed);
        }
        for chunk in batches.chunks(MAX_COALESCE) {
            let prepared: Vec<Arc<Prepared>> = chunk.iter().map(|b| self.prepare(b)).collect();
            if chunk.len() == 1 {
                let p = &prepared[0];
                let og = Arc::new(Outgoing {
                    ws: p.ws.clone(),
                    tcp: p.tcp.clone(),
                    msgs: vec![p.clone()],
                });
                let room = chunk[0].msg.room_id;
                for &u in &chunk[0].receivers {
                    self.hub.for_each_session_in(u, room, |s| {
                        n += self.enqueue(s, og.clone(), 1);
                    });
                }
                continue;
            }
            // Several messages: which messages each user receives (a bit mask), then one
            // index lookup per user; sessions receiving the same set share one frame string.
            let n_recv = chunk.iter().map(|b| b.receivers.len()).max().unwrap_or(0);
            let mut users: IdMap<i64, u64> =
                IdMap::with_capacity_and_hasher(n_recv, Default::default());
            let mut rooms: IdMap<i64, u64> = IdMap::default();
            for (i, b) in chunk.iter().enumerate() {
                *rooms.entry(b.msg.room_id).or_default() |= 1 << i;
                for &u in &b.receivers {
                    *users.entry(u).or_default() |= 1 << i;
                }
            }
            let mut by_mask: IdMap<u64, Arc<Outgoing>> = IdMap::default();
            for (u, mask) in users {
                self.hub.for_each_session_of(u, |room, s| {
                    let m = match room {
                        Some(r) => mask & rooms.get(&r).copied().unwrap_or(0),
                        None => mask,
                    };
                    if m != 0 {
                        let og = by_mask
                            .entry(m)
                            .or_insert_with(|| Arc::new(concat(m, &prepared)))
                            .clone();
                        n += self.enqueue(s, og, m.count_ones() as usize);
                    }
                });
            }
        }
        self.counters
            .delivered
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn enqueue(&self, s: &crate::hub::SessionHandle, og: Arc<Outgoing>, msgs: usize) -> usize {
        match s.enqueue(og) {
            Enqueue::Queued => msgs,
            Enqueue::Overflow => {
                self.counters.slow_kicked.fetch_add(1, Ordering::Relaxed);
                0
            }
            Enqueue::Closed => 0,
        }
    }

    /// Asks every open session to close (e.g. before the process exits).
    pub fn close_all(&self) {
        self.hub.for_each_conn(|s| s.kick(Kick::Shutdown));
    }

    /// Accepts TCP clients (binary protocol) until `shutdown` resolves. Existing sessions stay
    /// open; see [`Gateway::close_all`].
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.ensure_tasks();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = listener.accept() => match r {
                    Ok((sock, _peer)) => {
                        let _ = sock.set_nodelay(true);
                        tokio::spawn(crate::session::run(self.clone(), sock, Wire::Tcp, None));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "im tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Registers this gateway in the cache every `registration_interval` until `shutdown`
    /// resolves, then deregisters it. Also trims stale online heartbeats.
    pub async fn run_registration(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        self.ensure_tasks();
        tokio::pin!(shutdown);
        let ttl = self.cfg.registration_interval * 3;
        loop {
            if let Err(e) = registry::register(&*self.cache, &self.info(), ttl).await {
                tracing::warn!(error = %e, "im gateway registration failed");
            }
            if let Err(e) =
                registry::trim_online(&*self.cache, None, 2 * self.cfg.heartbeat_gap).await
            {
                tracing::warn!(error = %e, "trimming online heartbeats failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.registration_interval) => {}
                _ = &mut shutdown => break,
            }
        }
        if let Err(e) = registry::deregister(&*self.cache, &self.cfg.gateway_id).await {
            tracing::warn!(error = %e, "im gateway deregistration failed");
        }
    }
}

/// The frames of the messages in `mask`, concatenated (shared when only one).
fn concat(mask: u64, prepared: &[Arc<Prepared>]) -> Outgoing {
    let msgs: Vec<Arc<Prepared>> = (0..prepared.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| prepared[i].clone())
        .collect();
    if msgs.len() == 1 {
        return Outgoing {
            ws: msgs[0].ws.clone(),
            tcp: msgs[0].tcp.clone(),
            msgs,
        };
    }
    let mut ws = BytesMut::with_capacity(msgs.iter().map(|m| m.ws.len()).sum());
    let mut tcp = BytesMut::with_capacity(msgs.iter().map(|m| m.tcp.len()).sum());
    for m in &msgs {
        ws.put_slice(&m.ws);
        tcp.put_slice(&m.tcp);
    }
    Outgoing {
        ws: ws.freeze(),
        tcp: tcp.freeze(),
        msgs,
    }
}
