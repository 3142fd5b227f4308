//! The event bus port: keyed, ordered-per-key topics with consumer groups and at-least-once
//! delivery (commit after handling). Embedded adapter: in-process; distributed: Kafka.
//!
//! Must not: interpret payloads (see [`crate::events`] for what travels on it).

pub mod conformance;
mod kafka;
mod memory;

use async_trait::async_trait;
use bytes::Bytes;

pub use kafka::KafkaBus;
pub use memory::MemoryBus;

/// Topic of chat messages, keyed by room id.
pub const TOPIC_CHAT: &str = "livehouse.chat";
/// Topic of online events (a user's session logged in to a room), keyed by room id.
pub const TOPIC_ONLINE: &str = "livehouse.online";
/// Topic of offline events (a session ended), keyed by room id.
pub const TOPIC_OFFLINE: &str = "livehouse.offline";
/// Topic of orders to the gateways (`events::ControlEvent`), keyed by the gateway concerned.
pub const TOPIC_CONTROL: &str = "livehouse.control";
/// Topic of moderation events ([`crate::events::ModerationEvent`]), keyed by room id (by
/// `user:<id>` for account-wide ones). Every gateway reads it in a tail group of its own.
pub const TOPIC_MODERATION: &str = "livehouse.moderation";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus backend error: {0}")]
    Backend(String),
    #[error("bus closed")]
    Closed,
}

/// One message handed to a subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub key: String,
    pub payload: Bytes,
    pub partition: i32,
    pub offset: i64,
}

/// Publishes and subscribes. Messages with the same key keep their order.
///
/// A new group (one that never committed) starts from the oldest message the backend still has
/// (Kafka `auto.offset.reset=earliest`; the memory bus keeps nothing from before a group was
/// first joined), so subscribe before the first publish you must not miss.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, topic: &str, key: &str, payload: Bytes) -> Result<(), BusError>;
    /// Joins consumer group `group` on `topic`: each message goes to one member of each group.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;
    /// Like [`Bus::subscribe`], for a group that wants no history: a new group starts at the end
    /// of each partition (Kafka `auto.offset.reset=latest`), so it may miss what is published
    /// while it joins. For per-instance views that resync from elsewhere; such a group need not
    /// commit. The default is [`Bus::subscribe`].
    async fn subscribe_tail(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.subscribe(topic, group).await
    }
}

/// A group member's stream of deliveries.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; waits until one is available.
    async fn next(&mut self) -> Result<Delivery, BusError>;
    /// Marks `d` (and everything before it in its partition) as handled. What is not committed
    /// is delivered again to the group after a restart or rebalance.
    async fn commit(&mut self, d: &Delivery) -> Result<(), BusError>;
}
