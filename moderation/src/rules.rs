//! A room's rule set, as the writers build it from SQL and the gateways read it from the cache,
//! and the limits of each rule. Times are epoch milliseconds.

use serde::{Deserialize, Serialize};

/// Most blocked words a room may have.
pub const MAX_WORDS_PER_ROOM: usize = 1000;
/// Longest blocked word, in characters.
pub const MAX_WORD_CHARS: usize = 50;
/// Longest slow-mode interval, in seconds.
pub const MAX_SLOW_MODE_SECS: u32 = 300;
/// Longest timed mute: 30 days (a longer silence is a ban).
pub const MAX_MUTE_SECS: i64 = 30 * 24 * 3600;
/// Most room admins a room may have.
pub const MAX_ADMINS: usize = 100;

/// One muted user. `until_ms == 0` means "until the room closes".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mute {
    pub user_id: i64,
    pub until_ms: i64,
}

impl Mute {
    /// Whether the mute still holds at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms == 0 || self.until_ms > now_ms
    }
}

/// Everything a gateway needs to judge a chat message of a room, at one version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoomRules {
    pub room_id: i64,
    pub anchor_id: i64,
    /// Grows with every change of the room's rules; a reader keeps the highest it has seen.
    pub version: u64,
    /// True once the room has closed: the rule set is empty from then on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
    /// Per-user interval between chat messages, 0 = off.
    #[serde(default)]
    pub slow_mode_secs: u32,
    #[serde(default)]
    pub muted: Vec<Mute>,
    #[serde(default)]
    pub banned: Vec<i64>,
    #[serde(default)]
    pub admins: Vec<i64>,
    /// The room's blocked words as entered (the filter folds them).
    #[serde(default)]
    pub words: Vec<String>,
}

impl RoomRules {
    /// The empty rule set of a closed room at `version`.
    pub fn closed(room_id: i64, anchor_id: i64, version: u64) -> Self {
        RoomRules {
            room_id,
            anchor_id,
            version,
            closed: true,
            ..Default::default()
        }
    }
}

/// Checks one blocked word as entered: 1 to [`MAX_WORD_CHARS`] characters after trimming, no
/// control characters, something left after folding. Returns the trimmed word and its folded
/// form (what duplicates are judged by).
pub fn validate_word(word: &str) -> Result<(String, String), String> {
    let w = word.trim();
    if w.is_empty() {
        return Err("a blocked word must not be empty".into());
    }
    let n = w.chars().count();
    if n > MAX_WORD_CHARS {
        return Err(format!(
            "blocked words are at most {MAX_WORD_CHARS} characters (`{}…` has {n})",
            w.chars().take(12).collect::<String>()
        ));
    }
    if w.chars().any(char::is_control) {
        return Err("a blocked word must not contain control characters".into());
    }
    let folded = crate::filter::fold(w).into_owned();
    if folded.trim().is_empty() {
        return Err(format!("`{w}` is empty once folded"));
    }
    Ok((w.to_string(), folded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_trimmed_bounded_and_folded() {
        assert_eq!(
            validate_word("  ＨＥＬＬＯ ").unwrap(),
            ("ＨＥＬＬＯ".to_string(), "hello".to_string())
        );
        assert!(validate_word("   ").is_err());
        assert!(validate_word(&"x".repeat(51)).is_err());
        assert!(
            validate_word(&"字".repeat(50)).is_ok(),
            "50 characters, 150 bytes"
        );
        assert!(validate_word("a\u{7}b").is_err());
    }

    #[test]
    fn a_mute_holds_until_its_end_or_the_room_closes() {
        assert!(Mute {
            user_id: 1,
            until_ms: 0
        }
        .active(i64::MAX));
        assert!(Mute {
            user_id: 1,
            until_ms: 100
        }
        .active(99));
        assert!(!Mute {
            user_id: 1,
            until_ms: 100
        }
        .active(100));
    }

    #[test]
    fn the_json_form_is_camel_case_and_tolerates_missing_lists() {
        let r: RoomRules =
            serde_json::from_str(r#"{"roomId":3,"anchorId":4,"version":9}"#).unwrap();
        assert_eq!(r.version, 9);
        assert!(r.muted.is_empty() && !r.closed);
        let json = serde_json::to_string(&RoomRules {
            slow_mode_secs: 5,
            muted: vec![Mute {
                user_id: 7,
                until_ms: 0,
            }],
            ..RoomRules::default()
        })
        .unwrap();
        assert!(json.contains(r#""slowModeSecs":5"#) && json.contains(r#""untilMs":0"#));
        assert!(!json.contains("closed"), "{json}");
    }
}
