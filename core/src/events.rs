//! What travels between roles: bus events and the gateway push batch, as JSON.
//! Field names are camelCase, like the seed system's wire protocol.

use serde::{Deserialize, Serialize};

/// A chat (business) message accepted by a gateway, published on [`crate::bus::TOPIC_CHAT`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    /// Unique id; receivers ACK it and drop redelivered duplicates by it.
    pub msg_id: String,
    pub app_id: i32,
    pub room_id: i64,
    pub sender_id: i64,
    pub biz_code: i32,
    /// The message data as the client sent it (a JSON string: `{roomId, content, …}`).
    pub data: String,
    pub sent_at_ms: i64,
}

/// A session joined or left a room, published on the online/offline topics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    pub user_id: i64,
    pub room_id: i64,
    /// Id of the gateway the session lives on.
    pub gateway_id: String,
    pub at_ms: i64,
}

/// One chat message for many receivers on one gateway: what `msg` sends to a gateway's internal
/// push endpoint, once per gateway per message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PushBatch {
    pub receivers: Vec<i64>,
    pub msg: ChatEvent,
}

/// A live gateway as registered in the cache (`keys::gateway_info`), refreshed by its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    pub id: String,
    /// WebSocket address for browsers, e.g. `ws://127.0.0.1:8080/ws`.
    pub ws_addr: String,
    /// TCP binary-protocol address, e.g. `127.0.0.1:8085`.
    pub tcp_addr: String,
    /// Base URL of the gateway's HTTP server, where `POST /internal/im/push` takes a [`PushBatch`].
    pub push_url: String,
    /// Sessions currently open on it (for least-loaded choice).
    pub sessions: u64,
}

/// Cache key names shared by more than one role. A key used by one role only is named there.
pub mod keys {
    /// Sorted set of live gateway ids, score = last heartbeat (epoch ms).
    pub const GATEWAYS: &str = "im:gateways";
    /// JSON [`super::GatewayInfo`] of one gateway.
    pub fn gateway_info(gateway_id: &str) -> String {
        format!("im:gateway:{gateway_id}")
    }
    /// IM login token → user id (5 min TTL).
    pub fn im_token(token: &str) -> String {
        format!("im:token:{token}")
    }
    /// The gateway id a user's session is bound to (TTL = 2 heartbeat gaps).
    pub fn user_gateway(user_id: i64) -> String {
        format!("im:bind:{user_id}")
    }
    /// Online heartbeat sorted set shard for a user (member = user id, score = epoch ms).
    pub fn online_shard(user_id: i64) -> String {
        format!("im:online:{}", user_id.rem_euclid(16))
    }
    /// Set of user ids in a room (kept by `living` from online/offline events, 12 h expiry).
    pub fn room_members(room_id: i64) -> String {
        format!("living:members:{room_id}")
    }
}
