//! [`RuleBook`]: a gateway's local copy of the moderation rules of the rooms it serves, so that
//! judging a chat message is a synchronous lookup with no cache round trip.
//!
//! - **Per chat message**: [`RuleBook::check`] (pure, synchronous): banned, muted (with its end),
//!   a blocked word (the room's, unless the sender is the anchor or a room admin, and the
//!   deployment-wide list for everyone), plus the room's slow-mode interval for this sender
//!   (0 for the anchor and room admins). Enforcing slow mode and the per-user rate across
//!   gateways is the gateway's business.
//! - **At login**: [`RuleBook::admit`]: suspended platform-wide? banned from this room? It loads
//!   the room's rules from the cache on first use.
//! - **Kept current**: every change is announced on the bus ([`TOPIC_MODERATION`]) after the
//!   rules are in the cache; [`RuleBook::apply`] reloads the room when the event's version is
//!   newer than the local one and tells the caller whom to disconnect ([`Enforcement`]).
//!   [`RuleBook::refresh`] rereads every served room (one `MGET`) and the suspended set: the
//!   safety net for a lost event. [`RuleBook::follow`] does both in one loop.
//!
//! The local copy only ever moves to a higher version, so a late reload cannot undo a newer one.
//!
//! Must not: write rules, or hold its lock across an `.await` (loads read the cache first and
//! swap the compiled rules in afterwards).

use crate::filter::{fold, WordFilter};
use crate::rules::RoomRules;
use crate::store;
use livehouse_core::bus::{Bus, BusError, TOPIC_MODERATION};
use livehouse_core::cache::{Cache, CacheResult};
use livehouse_core::events::{ModerationEvent, ModerationKind};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a chat message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Banned,
    /// Muted until `until_ms` (0 = until the room closes).
    Muted {
        until_ms: i64,
    },
    BlockedWord,
}

impl Refusal {
    /// The error slug of the gateway's reply (design §3.2).
    pub fn slug(self) -> &'static str {
        match self {
            Refusal::Banned => "banned",
            Refusal::Muted { .. } => "muted",
            Refusal::BlockedWord => "blocked_word",
        }
    }
}

/// The verdict on one chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatCheck {
    pub refusal: Option<Refusal>,
    /// The room's slow-mode interval for this sender (0 = off, or the sender is exempt).
    pub slow_mode_secs: u32,
}

/// The verdict on a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Banned from this room: refuse with `banned`.
    Banned,
    /// Suspended platform-wide: refuse with `suspended`.
    Suspended,
}

/// What [`RuleBook::apply`] asks the gateway to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    Nothing,
    /// Close the user's sessions in this room (a ban).
    CloseUserInRoom {
        room_id: i64,
        user_id: i64,
    },
    /// Close every session of the user (a suspension).
    CloseUser {
        user_id: i64,
    },
    /// The room closed; its rules were dropped.
    RoomClosed {
        room_id: i64,
    },
}

/// A room's rules, compiled for lookups.
#[derive(Debug, Default)]
struct Compiled {
    version: u64,
    anchor_id: i64,
    slow_mode_secs: u32,
    muted: HashMap<i64, i64>,
    banned: HashSet<i64>,
    admins: HashSet<i64>,
    words: WordFilter,
}

impl Compiled {
    fn new(r: &RoomRules) -> Self {
        if r.closed {
            return Compiled {
                version: r.version,
                anchor_id: r.anchor_id,
                ..Default::default()
            };
        }
        Compiled {
            version: r.version,
            anchor_id: r.anchor_id,
            slow_mode_secs: r.slow_mode_secs,
            muted: r.muted.iter().map(|m| (m.user_id, m.until_ms)).collect(),
            banned: r.banned.iter().copied().collect(),
            admins: r.admins.iter().copied().collect(),
            words: WordFilter::new(&r.words),
        }
    }

    fn exempt(&self, user_id: i64) -> bool {
        user_id == self.anchor_id || self.admins.contains(&user_id)
    }
}

/// See the module documentation. Share it behind an `Arc`.
pub struct RuleBook {
    cache: Arc<dyn Cache>,
    global: WordFilter,
    rooms: RwLock<HashMap<i64, Arc<Compiled>>>,
    suspended: RwLock<HashSet<i64>>,
}

impl RuleBook {
    /// A book reading rules from `cache`, with the deployment-wide blocked words `global`.
    pub fn new(cache: Arc<dyn Cache>, global: WordFilter) -> Arc<Self> {
        Arc::new(RuleBook {
            cache,
            global,
            rooms: RwLock::new(HashMap::new()),
            suspended: RwLock::new(HashSet::new()),
        })
    }

    /// Judges one chat message of `user_id` in `room_id` at `now_ms`. A room never loaded is
    /// judged by the deployment-wide words only (call [`Self::admit`] at login).
    pub fn check(&self, room_id: i64, user_id: i64, content: &str, now_ms: i64) -> ChatCheck {
        let rules = self.rooms.read().get(&room_id).cloned();
        let Some(r) = rules else {
            let refused = self.global.is_match(content);
            return ChatCheck {
                refusal: refused.then_some(Refusal::BlockedWord),
                slow_mode_secs: 0,
            };
        };
        let refusal = if r.banned.contains(&user_id) {
            Some(Refusal::Banned)
        } else if let Some(&until_ms) = r.muted.get(&user_id).filter(|&&u| u == 0 || u > now_ms) {
            Some(Refusal::Muted { until_ms })
        } else if self.has_blocked_word(&r, user_id, content) {
            Some(Refusal::BlockedWord)
        } else {
            None
        };
        ChatCheck {
            refusal,
            slow_mode_secs: if r.exempt(user_id) {
                0
            } else {
                r.slow_mode_secs
            },
        }
    }

    fn has_blocked_word(&self, r: &Compiled, user_id: i64, content: &str) -> bool {
        let room_words = !r.words.is_empty() && !r.exempt(user_id);
        if !room_words && self.global.is_empty() {
            return false;
        }
        if content.is_ascii() {
            return self.global.is_match(content) || (room_words && r.words.is_match(content));
        }
        // Fold once for both lists.
        let folded = fold(content);
        self.global.is_match_folded(&folded) || (room_words && r.words.is_match_folded(&folded))
    }

    /// Whether the user is banned from the room, by the local copy only.
    pub fn is_banned(&self, room_id: i64, user_id: i64) -> bool {
        self.rooms
            .read()
            .get(&room_id)
            .is_some_and(|r| r.banned.contains(&user_id))
    }

    /// Whether the user is suspended platform-wide, by the local copy only.
    pub fn is_suspended(&self, user_id: i64) -> bool {
        self.suspended.read().contains(&user_id)
    }

    /// At login: loads the room's rules on first use, then judges the user.
    pub async fn admit(&self, room_id: i64, user_id: i64) -> CacheResult<Admission> {
        if self.is_suspended(user_id) {
            return Ok(Admission::Suspended);
        }
        if !self.rooms.read().contains_key(&room_id) {
            self.load(room_id).await?;
        }
        Ok(if self.is_banned(room_id, user_id) {
            Admission::Banned
        } else {
            Admission::Allowed
        })
    }

    /// Reads the room's rules from the cache and keeps them if newer than the local copy.
    /// Returns the version held afterwards.
    pub async fn load(&self, room_id: i64) -> CacheResult<u64> {
        let rules = store::read(self.cache.as_ref(), room_id).await?;
        Ok(self.install(room_id, rules.as_ref()))
    }

    /// Keeps `rules` (absent = none, version 0) unless the local copy is as new.
    fn install(&self, room_id: i64, rules: Option<&RoomRules>) -> u64 {
        let compiled = match rules {
            Some(r) => Compiled::new(r),
            None => Compiled::default(),
        };
        let mut rooms = self.rooms.write();
        match rooms.get(&room_id) {
            Some(cur) if cur.version >= compiled.version => cur.version,
            _ => {
                let v = compiled.version;
                rooms.insert(room_id, Arc::new(compiled));
                v
            }
        }
    }

    /// The version of the room's local rules, if loaded.
    pub fn version(&self, room_id: i64) -> Option<u64> {
        self.rooms.read().get(&room_id).map(|r| r.version)
    }

    /// The rooms whose rules are held.
    pub fn rooms(&self) -> Vec<i64> {
        self.rooms.read().keys().copied().collect()
    }

    /// Drops a room's rules (the gateway no longer serves it).
    pub fn forget(&self, room_id: i64) {
        self.rooms.write().remove(&room_id);
    }

    /// Handles one moderation event: reloads what it names and says whom to disconnect.
    pub async fn apply(&self, ev: &ModerationEvent) -> CacheResult<Enforcement> {
        let reload = |ev: &ModerationEvent| {
            let held = self.version(ev.room_id);
            held.is_some_and(|v| v < ev.version)
        };
        Ok(match ev.kind {
            ModerationKind::RulesChanged => {
                if reload(ev) {
                    self.load(ev.room_id).await?;
                }
                Enforcement::Nothing
            }
            ModerationKind::UserBanned => {
                if reload(ev) {
                    self.load(ev.room_id).await?;
                }
                Enforcement::CloseUserInRoom {
                    room_id: ev.room_id,
                    user_id: ev.user_id,
                }
            }
            ModerationKind::UserSuspended => {
                self.suspended.write().insert(ev.user_id);
                Enforcement::CloseUser {
                    user_id: ev.user_id,
                }
            }
            ModerationKind::UserUnsuspended => {
                self.suspended.write().remove(&ev.user_id);
                Enforcement::Nothing
            }
            ModerationKind::RoomClosed => {
                if reload(ev) {
                    self.load(ev.room_id).await?;
                }
                Enforcement::RoomClosed {
                    room_id: ev.room_id,
                }
            }
        })
    }

    /// Rereads every held room (one `MGET` per 1,000 rooms) and the suspended set. Returns how
    /// many rooms moved to a newer version.
    pub async fn refresh(&self) -> CacheResult<usize> {
        let suspended: HashSet<i64> = store::suspended_users(self.cache.as_ref())
            .await?
            .into_iter()
            .collect();
        *self.suspended.write() = suspended;
        let rooms = self.rooms();
        let all = store::read_many(self.cache.as_ref(), &rooms).await?;
        let mut moved = 0;
        for (room, rules) in rooms.iter().zip(all) {
            let before = self.version(*room);
            if let Some(r) = rules {
                if before.is_some_and(|b| b < r.version) {
                    self.install(*room, Some(&r));
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Follows the moderation topic in the tail group `group` (one per gateway instance, e.g.
    /// `moderation-<gatewayId>`), applying each event and handing its [`Enforcement`] to
    /// `enforce`, and calls [`Self::refresh`] every `refresh_every`, until `shutdown` resolves.
    /// Subscribes before the first refresh, so nothing published after the call is missed.
    pub async fn follow<F>(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        group: &str,
        refresh_every: Duration,
        enforce: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), BusError>
    where
        F: Fn(Enforcement) + Send + Sync,
    {
        let mut sub = bus.subscribe_tail(TOPIC_MODERATION, group).await?;
        let mut tick = tokio::time::interval(refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "moderation rules refresh failed");
                    }
                }
                d = sub.next() => {
                    let d = d?;
                    match serde_json::from_slice::<ModerationEvent>(&d.payload) {
                        Ok(ev) => match self.apply(&ev).await {
                            Ok(Enforcement::Nothing) => {}
                            Ok(e) => enforce(e),
                            Err(e) => {
                                // The next refresh picks the rules up; a ban still closes.
                                tracing::warn!(error = %e, room = ev.room_id, "moderation reload failed");
                                if ev.kind == ModerationKind::UserBanned {
                                    enforce(Enforcement::CloseUserInRoom { room_id: ev.room_id, user_id: ev.user_id });
                                }
                            }
                        },
                        Err(e) => tracing::warn!(error = %e, "unreadable moderation event skipped"),
                    }
                    sub.commit(&d).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Mute;
    use livehouse_core::cache::MemoryCache;

    fn rules(version: u64) -> RoomRules {
        RoomRules {
            room_id: 1,
            anchor_id: 100,
            version,
            slow_mode_secs: 10,
            muted: vec![
                Mute {
                    user_id: 2,
                    until_ms: 0,
                },
                Mute {
                    user_id: 3,
                    until_ms: 5_000,
                },
            ],
            banned: vec![4],
            admins: vec![5],
            words: vec!["spam".into()],
            closed: false,
        }
    }

    #[test]
    fn check_judges_bans_mutes_words_and_exemptions() {
        let book = RuleBook::new(Arc::new(MemoryCache::new()), WordFilter::new(&["global"]));
        book.install(1, Some(&rules(1)));
        let c = |user, text: &str, now| book.check(1, user, text, now);
        assert_eq!(c(4, "hi", 0).refusal, Some(Refusal::Banned));
        assert_eq!(c(2, "hi", 0).refusal, Some(Refusal::Muted { until_ms: 0 }));
        assert_eq!(
            c(3, "hi", 4_999).refusal,
            Some(Refusal::Muted { until_ms: 5_000 })
        );
        assert_eq!(c(3, "hi", 5_000).refusal, None, "a timed mute ends");
        assert_eq!(c(9, "SPAM!", 0).refusal, Some(Refusal::BlockedWord));
        assert_eq!(c(9, "ｓｐａｍ", 0).refusal, Some(Refusal::BlockedWord));
        assert_eq!(c(9, "a Global rule", 0).refusal, Some(Refusal::BlockedWord));
        assert_eq!(
            c(9, "hello", 0),
            ChatCheck {
                refusal: None,
                slow_mode_secs: 10
            }
        );
        // The anchor and admins skip the room's words and slow mode, not the global list.
        assert_eq!(
            c(100, "spam", 0),
            ChatCheck {
                refusal: None,
                slow_mode_secs: 0
            }
        );
        assert_eq!(
            c(5, "spam", 0),
            ChatCheck {
                refusal: None,
                slow_mode_secs: 0
            }
        );
        assert_eq!(c(5, "global", 0).refusal, Some(Refusal::BlockedWord));
        // A room never loaded: only the global words.
        assert_eq!(book.check(2, 4, "fine", 0).refusal, None);
        assert_eq!(
            book.check(2, 4, "GLOBAL", 0).refusal,
            Some(Refusal::BlockedWord)
        );
    }

    #[test]
    fn the_local_copy_only_moves_forward() {
        let book = RuleBook::new(Arc::new(MemoryCache::new()), WordFilter::default());
        assert_eq!(book.install(1, Some(&rules(5))), 5);
        let mut older = rules(4);
        older.banned.clear();
        assert_eq!(
            book.install(1, Some(&older)),
            5,
            "an older version is ignored"
        );
        assert!(book.is_banned(1, 4));
        assert_eq!(
            book.install(1, None),
            5,
            "a missing key does not wipe newer rules"
        );
        assert_eq!(book.install(1, Some(&RoomRules::closed(1, 100, 6))), 6);
        assert!(!book.is_banned(1, 4), "a closed room has no rules");
        assert_eq!(book.check(1, 2, "x", 0).refusal, None);
    }
}
