//! [`ImConfig`]: everything a gateway is told at start. Defaults suit production; tests shrink
//! the timers.

use std::sync::Arc;
use std::time::Duration;

/// Checks the internal token a caller of `POST /internal/im/push` presents.
pub type InternalAuth = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Configuration of one gateway.
#[derive(Clone)]
pub struct ImConfig {
    /// Unique id of this gateway (presence key, control-event address). No `/`.
    pub gateway_id: String,
    /// TCP address clients are told to use, e.g. `127.0.0.1:8085`.
    pub tcp_addr_public: String,
    /// WebSocket URL clients are told to use, e.g. `ws://127.0.0.1:8080/ws`.
    pub ws_addr_public: String,
    /// Base URL of this gateway's HTTP server (where `msg` posts `/internal/im/push`).
    pub push_url: String,
    /// A connection that has not logged in this long after it opened is closed (design §4).
    pub login_timeout: Duration,
    /// Expected client heartbeat period; a connection silent for 2 gaps is closed.
    pub heartbeat_gap: Duration,
    /// Time a delivered message waits for its ACK before its single retry (and after it, before
    /// being dropped).
    pub ack_timeout: Duration,
    /// Checks the `x-livehouse-internal` header of `POST /internal/im/push`; `None` disables the
    /// endpoint.
    pub internal_auth: Option<InternalAuth>,
    /// Period of the gateway's beat in the presence store (liveness, load, room counts).
    pub beat_interval: Duration,
    /// How often each room's position is compared with its chat log, to fetch messages no push
    /// brought (a failed push, a room `msg` did not know this gateway serves yet).
    pub repair_interval: Duration,
    /// Bound of each connection's outbound queue (items); overflow disconnects it.
    pub outbox_limit: usize,
    /// Bound of each connection's pending-ACK list; the oldest is dropped (not retried) when full.
    pub max_pending_acks: usize,
    /// Chat messages per second per user (also the burst).
    pub chat_rate_per_sec: u32,
    /// Coalescing window of the fan-out; zero delivers each push at once.
    pub fanout_linger: Duration,
    /// Logged-in connections one user may hold at once, over all gateways (design §3.1).
    pub max_conns_per_user: usize,
    /// Recent messages kept per room in memory, so most recoveries read no chat log.
    pub recent_per_room: usize,
    /// Bound of the queue of messages waiting for the bus (chat, presence, control).
    pub publish_queue: usize,
    /// How long an accepted chat message may wait for the bus before the sender is told
    /// `unavailable` and the message is dropped.
    pub publish_deadline: Duration,
    /// Caps on the TCP listener's connections (per client address, in all); `None`: no cap.
    /// WebSocket connections are counted by the HTTP server they arrive on.
    pub tcp_limiter: Option<Arc<livehouse_core::limits::ConnLimiter>>,
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
            internal_auth: None,
            beat_interval: Duration::from_millis(500),
            repair_interval: Duration::from_secs(1),
            outbox_limit: 512,
            max_pending_acks: 256,
            chat_rate_per_sec: 5,
            fanout_linger: Duration::ZERO,
            max_conns_per_user: 5,
            recent_per_room: 128,
            publish_queue: 8192,
            publish_deadline: Duration::from_secs(5),
            tcp_limiter: None,
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
            .field("internal_auth", &self.internal_auth.as_ref().map(|_| "***"))
            .field("beat_interval", &self.beat_interval)
            .field("repair_interval", &self.repair_interval)
            .field("outbox_limit", &self.outbox_limit)
            .field("max_pending_acks", &self.max_pending_acks)
            .field("chat_rate_per_sec", &self.chat_rate_per_sec)
            .field("fanout_linger", &self.fanout_linger)
            .field("max_conns_per_user", &self.max_conns_per_user)
            .field("recent_per_room", &self.recent_per_room)
            .field("publish_queue", &self.publish_queue)
            .field("publish_deadline", &self.publish_deadline)
            .field("tcp_limiter", &self.tcp_limiter)
            .finish()
    }
}
