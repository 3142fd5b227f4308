//! Operator notifications: what the rooms and moderation services tell the outside world
//! (webhooks) as it happens: `room_started`, `room_closed`, `stream_started`, `stream_stopped`,
//! `user_banned`, `message_deleted`. The services call a [`Notifier`]; the binary wires the
//! webhook sender (`livehouse_api::webhooks`) to it.
//!
//! Must not: block or fail the caller: a notifier queues and returns.

use serde_json::Value;
use std::sync::Arc;

/// One event for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorEvent {
    /// `room_started`, `room_closed`, `stream_started`, `stream_stopped`, `user_banned`,
    /// `message_deleted`.
    pub kind: &'static str,
    pub at_ms: i64,
    /// The event's fields (camelCase JSON object).
    pub data: Value,
}

impl OperatorEvent {
    pub fn new(kind: &'static str, data: Value) -> Self {
        OperatorEvent {
            kind,
            at_ms: livehouse_core::time::now_ms(),
            data,
        }
    }
}

/// Receives operator events. Must return at once (queue, never wait on the network).
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, event: OperatorEvent);
}

/// Drops every event (no webhooks configured).
pub struct Silent;

impl Notifier for Silent {
    fn notify(&self, _event: OperatorEvent) {}
}

/// The default notifier.
pub fn silent() -> Arc<dyn Notifier> {
    Arc::new(Silent)
}
