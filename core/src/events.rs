//! What travels between roles: bus events, the gateway push and the gateway registration, as
//! JSON. Field names are camelCase, like the seed system's wire protocol.

use serde::{Deserialize, Serialize};

/// A room message accepted by a gateway (chat) or made by the api (recall, notice), published
/// on [`crate::bus::TOPIC_CHAT`] keyed by room. The `msg` role gives it its place in the room's
/// stream (the chat log) and fans it out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    /// Unique id; the chat log appends a message id once, and clients drop duplicates by it.
    pub msg_id: String,
    pub app_id: i32,
    pub room_id: i64,
    pub sender_id: i64,
    /// 5555 chat, 5556 recall, 5557 notice (design §3, §3.2).
    pub biz_code: i32,
    /// The message data: a JSON object rebuilt by the server from validated fields.
    pub data: String,
    pub sent_at_ms: i64,
    /// The gateway and connection the message came from: that connection is not sent its own
    /// message back (the sender's other devices are). Empty / 0 for server-made messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin_gateway: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub origin_conn: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A message with its place in the room's stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamEntry {
    pub offset: u64,
    pub msg: ChatEvent,
}

/// Consecutive messages of one room's stream: what `msg` pushes to each gateway with viewers
/// in the room (`POST /internal/im/push` carries a list of them). The gateway delivers them to
/// every local connection in the room, fetching from the chat log any offsets it missed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomBatch {
    pub room_id: i64,
    pub epoch: String,
    /// Ordered by offset.
    pub entries: Vec<StreamEntry>,
}

/// A logged-in connection joined (online topic) or left (offline topic) a room, keyed by room.
/// `msg` learns from online events at once that a gateway serves a room; consumers must
/// tolerate duplicates and loss (the presence port is the truth).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    pub user_id: i64,
    pub room_id: i64,
    /// Id of the gateway the connection lives on.
    pub gateway_id: String,
    pub at_ms: i64,
}

/// An order to gateways, published on [`crate::bus::TOPIC_CONTROL`]; every gateway reads every
/// one (a tail group of its own) and acts on those that concern its connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ControlEvent {
    /// Close one connection: a newer login of the same user, device and room replaced it, or
    /// the user went over their session limit.
    #[serde(rename_all = "camelCase")]
    Replace { gateway_id: String, conn: u64 },
}

/// A live gateway as it registers itself in the presence port, refreshed by its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    pub id: String,
    /// WebSocket address for browsers, e.g. `ws://127.0.0.1:8080/ws`.
    pub ws_addr: String,
    /// TCP binary-protocol address, e.g. `127.0.0.1:8085`.
    pub tcp_addr: String,
    /// Base URL of the gateway's HTTP server, where `POST /internal/im/push` takes room batches.
    pub push_url: String,
    /// Connections currently open on it (for the choice of a gateway).
    pub sessions: u64,
}

/// What a moderation event asks of the gateways. Serialized in snake_case.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModerationKind {
    /// The room's rule set changed (mute, unmute, unban, slow mode, words, admins): reload it
    /// from the cache if its version is newer than the local copy.
    RulesChanged,
    /// `user_id` was banned from the room: reload the rules, and close the user's sessions in
    /// that room.
    UserBanned,
    /// `user_id` was suspended platform-wide: close every session of the user, refuse logins.
    UserSuspended,
    /// The suspension of `user_id` was lifted.
    UserUnsuspended,
    /// The room closed (by its anchor or an operator): its room-scoped rules are gone.
    RoomClosed,
}

/// A change of moderation state, published on [`crate::bus::TOPIC_MODERATION`] after the
/// change is in SQL and the room's rule set is in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModerationEvent {
    pub kind: ModerationKind,
    /// The room (0 for account-wide events).
    pub room_id: i64,
    /// The user concerned (0 when none).
    pub user_id: i64,
    /// Version of the room's rule set after the change (0 when not about a rule set).
    pub version: u64,
    pub at_ms: i64,
}

impl ModerationEvent {
    /// The bus key: the room, or `user:<id>` for account-wide events.
    pub fn key(&self) -> String {
        if self.room_id > 0 {
            self.room_id.to_string()
        } else {
            format!("user:{}", self.user_id)
        }
    }
}

/// Cache key names shared by more than one role. A key used by one role only is named there.
pub mod keys {
    /// IM login token → user id (5 min TTL).
    pub fn im_token(token: &str) -> String {
        format!("im:token:{token}")
    }
    /// A room's moderation rule set, written with `set_if_newer` (`"<version>:<json>"`); see
    /// `livehouse-moderation`.
    pub fn moderation_rules(room_id: i64) -> String {
        format!("moderation:rules:{room_id}")
    }
    /// Set of suspended user ids (the api keeps it; gateways refuse their logins).
    pub const SUSPENDED_USERS: &str = "moderation:suspended";
}
