//! The presence port: who is connected where. Live gateways, each logged-in connection (user,
//! device, room, on which gateway), and how many users each gateway serves in each room.
//!
//! **One liveness rule**: a gateway is live while its last [`Presence::beat`] is younger than
//! [`PresenceConfig::live_window`]; a connection, a binding or a room count is present exactly
//! while its gateway is live. Nothing else expires: a gateway that dies (even `kill -9`) takes all
//! of its state with it within one live window, for every reader at once, and [`Presence::sweep`]
//! later removes the leftovers. Each gateway writes only its own part (its connections and its
//! room counts), so the gateway is the truth and the store is its projection: after the store
//! lost its data (a Redis restart), the next beat says so and the gateway writes its part again
//! ([`Presence::restore`]).
//!
//! Readers: the api (choice of a gateway, `/im/online`), `msg` (which gateways serve a room),
//! `living` (a room's viewer count), the gateways (a user's other connections on login).
//!
//! Two adapters pass one [`conformance`] suite: [`MemoryPresence`] and [`RedisPresence`]. Every
//! operation takes the caller's clock, so the liveness rule is tested without waiting.
//!
//! Must not: know the wire protocol, or keep anything a live gateway did not write.

pub mod conformance;
mod memory;
mod redis_presence;

use crate::events::GatewayInfo;
use async_trait::async_trait;
use std::time::Duration;

pub use memory::MemoryPresence;
pub use redis_presence::RedisPresence;

/// Failure of a presence operation.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("presence backend error: {0}")]
    Backend(String),
}

impl From<redis::RedisError> for PresenceError {
    fn from(e: redis::RedisError) -> Self {
        PresenceError::Backend(e.to_string())
    }
}

pub type PresenceResult<T> = Result<T, PresenceError>;

/// How long a gateway stays live after its last beat.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub live_window: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            live_window: Duration::from_secs(2),
        }
    }
}

/// One logged-in connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conn {
    pub gateway: String,
    /// The gateway's id of the connection.
    pub conn: u64,
    pub user: i64,
    /// The client's device id (`""` when it sent none).
    pub device: String,
    /// The room it is logged in to, if any.
    pub room: Option<i64>,
    /// When it logged in (epoch ms).
    pub at_ms: i64,
}

impl Conn {
    /// Whether `other` is the same user on the same device in the same room: a new login
    /// replaces the older one of these (design §3.1).
    pub fn same_slot(&self, other: &Conn) -> bool {
        self.user == other.user && self.device == other.device && self.room == other.room
    }
}

/// What [`Presence::beat`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// The store still holds this gateway's state from its earlier beats. False on the first
    /// beat, and after the store lost its data: the gateway must [`Presence::restore`].
    pub known: bool,
}

/// Who is connected where (see the module docs).
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    fn config(&self) -> &PresenceConfig;

    /// Registers or refreshes a live gateway and sets its user count in the rooms whose count
    /// changed (`0` removes the room).
    async fn beat(
        &self,
        info: &GatewayInfo,
        room_counts: &[(i64, u64)],
        now_ms: i64,
    ) -> PresenceResult<Beat>;

    /// Removes a gateway and everything it wrote (a clean shutdown).
    async fn remove_gateway(&self, gateway: &str) -> PresenceResult<()>;

    /// The live gateways.
    async fn gateways(&self, now_ms: i64) -> PresenceResult<Vec<GatewayInfo>>;

    /// Registers a logged-in connection. Returns the live connections it displaces: the same
    /// user on the same device in the same room, and, while the user would hold more than
    /// `max_per_user`, their oldest other connections. Displaced ones are unregistered.
    async fn join(&self, c: &Conn, max_per_user: usize, now_ms: i64) -> PresenceResult<Vec<Conn>>;

    /// Unregisters a connection (nothing when it was displaced already).
    async fn leave(&self, c: &Conn) -> PresenceResult<()>;

    /// The user's live connections.
    async fn user_conns(&self, user: i64, now_ms: i64) -> PresenceResult<Vec<Conn>>;

    /// Live gateways serving the room, with their user counts there.
    async fn room_gateways(&self, room: i64, now_ms: i64) -> PresenceResult<Vec<(String, u64)>>;

    /// Each room's user count over its live gateways (one round trip).
    async fn room_counts(&self, rooms: &[i64], now_ms: i64) -> PresenceResult<Vec<u64>>;

    /// Writes a gateway's whole part again: its connections and room counts (after
    /// [`Beat::known`] was false).
    async fn restore(
        &self,
        gateway: &str,
        conns: &[Conn],
        room_counts: &[(i64, u64)],
    ) -> PresenceResult<()>;

    /// Removes what gateways dead for longer than the live window left behind; returns the
    /// rooms whose counts changed.
    async fn sweep(&self, now_ms: i64) -> PresenceResult<Vec<i64>>;
}

/// Milliseconds of a duration, at least 1.
pub(crate) fn ms(d: Duration) -> i64 {
    (d.as_millis() as i64).max(1)
}
