//! The payloads moderation pushes to a room's viewers, as `ChatEvent`s on the chat topic keyed by
//! room (so they keep their order with the chat): a recall (`bizCode` [`BIZ_RECALL`], data
//! [`Recall`]) and a notice (`bizCode` [`BIZ_NOTICE`], data [`Notice`]). Their `senderId` is 0,
//! so fan-out leaves nobody out.
//!
//! Must not: carry anything a viewer should not see (no reasons typed by moderators, no lists).

use serde::{Deserialize, Serialize};

/// `bizCode` of a recall: the messages `msgIds` are withdrawn.
pub const BIZ_RECALL: i32 = 5556;
/// `bizCode` of a moderation notice.
pub const BIZ_NOTICE: i32 = 5557;
/// Most message ids one recall may name.
pub const MAX_RECALL_IDS: usize = 100;

/// `data` of a recall.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recall {
    pub room_id: i64,
    pub msg_ids: Vec<String>,
}

/// What a notice announces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Slow mode turned on or changed: `seconds`.
    SlowModeOn,
    SlowModeOff,
    /// `userId` (`nickName`) was muted until `untilMs` (0 = until the room closes).
    UserMuted,
    /// `userId` (`nickName`) was banned from the room.
    UserBanned,
}

/// `data` of a notice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub room_id: i64,
    pub kind: NoticeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

/// Whether `id` looks like a message id: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_msg_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_camel_case_with_snake_case_kinds() {
        let n = Notice {
            room_id: 4,
            kind: NoticeKind::SlowModeOn,
            seconds: Some(10),
            user_id: None,
            nick_name: None,
            until_ms: None,
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"roomId":4,"kind":"slow_mode_on","seconds":10}"#
        );
        let r = Recall {
            room_id: 4,
            msg_ids: vec!["a-1".into()],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"roomId":4,"msgIds":["a-1"]}"#
        );
    }

    #[test]
    fn message_ids_are_bounded_and_plain() {
        assert!(valid_msg_id("im-3f2a_77"));
        assert!(!valid_msg_id(""));
        assert!(!valid_msg_id(&"a".repeat(65)));
        assert!(!valid_msg_id("a b") && !valid_msg_id("<x>"));
    }
}
