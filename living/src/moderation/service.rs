//! [`ModerationService`]: one method per moderation action, each validated, applied in SQL with
//! its audit row, then published (cache rule set, bus event, room notice, operator event).

use super::entity::{admin, ban, channel, log, mute, word};
use crate::entity::{living_room, living_room_record};
use crate::notify::OperatorEvent;
use crate::service::{LivingError, LivingResult, LivingService, RoomRecord};
use bytes::Bytes;
use livehouse_core::bus::{Bus, TOPIC_CHAT, TOPIC_MODERATION};
use livehouse_core::events::{ChatEvent, ModerationEvent, ModerationKind};
use livehouse_core::{ids, time::now_ms};
use livehouse_moderation::frames::{self, Notice, NoticeKind, Recall};
use livehouse_moderation::rules::{self, Mute, RoomRules};
use livehouse_moderation::store;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// `appId` of the frames pushed to rooms.
const APP_ID: i32 = 10001;
/// Most entries `log` returns at once.
pub const MAX_LOG_PAGE: u64 = 200;

/// In what capacity someone acts on a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The room's anchor.
    Anchor,
    /// An account with the `admin` tag (any room).
    Operator,
    /// A room admin appointed by the anchor.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anchor => "anchor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Who acts, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub role: Role,
}

/// A room moderation refers to: live, or closed (in the records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRef {
    pub room_id: i64,
    pub anchor_id: i64,
    pub live: bool,
}

/// What `words` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WordsChange {
    pub added: usize,
    pub removed: usize,
    pub total: usize,
}

/// A room's moderation state as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModerationState {
    pub room_id: i64,
    pub anchor_id: i64,
    pub live: bool,
    pub version: u64,
    pub slow_mode_secs: u32,
    /// Active mutes (`untilMs` 0 = until the room closes).
    pub muted: Vec<Mute>,
    pub banned: Vec<i64>,
    pub admins: Vec<i64>,
    pub words: Vec<String>,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub id: i64,
    pub room_id: i64,
    pub actor_id: i64,
    pub actor_role: String,
    pub action: String,
    pub target_id: i64,
    pub details: Value,
    pub at_ms: i64,
}

fn invalid(m: impl Into<String>) -> LivingError {
    LivingError::Invalid(m.into())
}

/// The moderation service. Cheap to clone.
#[derive(Clone)]
pub struct ModerationService {
    living: LivingService,
    bus: Arc<dyn Bus>,
}

impl ModerationService {
    pub fn new(living: LivingService, bus: Arc<dyn Bus>) -> Self {
        ModerationService { living, bus }
    }

    fn db(&self) -> &DatabaseConnection {
        self.living.db()
    }

    pub fn living(&self) -> &LivingService {
        &self.living
    }

    /// The live or closed room with this id; `None` when there is none.
    pub async fn room(&self, room_id: i64) -> LivingResult<Option<RoomRef>> {
        if room_id <= 0 {
            return Ok(None);
        }
        if let Some(r) = self.living.get(room_id).await? {
            return Ok(Some(RoomRef {
                room_id,
                anchor_id: r.anchor_id,
                live: true,
            }));
        }
        Ok(living_room_record::Entity::find_by_id(room_id)
            .one(self.db())
            .await?
            .map(|r| RoomRef {
                room_id,
                anchor_id: r.anchor_id,
                live: false,
            }))
    }

    /// Whether `user_id` is a room admin of the anchor's rooms.
    pub async fn is_admin(&self, anchor_id: i64, user_id: i64) -> LivingResult<bool> {
        Ok(admin::Entity::find_by_id((anchor_id, user_id))
            .one(self.db())
            .await?
            .is_some())
    }

    /// In what capacity `user_id` may manage the room (`operator`: the account has the admin
    /// tag), or `None`. The anchor first, then operators, then room admins.
    pub async fn role_of(
        &self,
        room: &RoomRef,
        user_id: i64,
        operator: bool,
    ) -> LivingResult<Option<Role>> {
        if user_id == room.anchor_id {
            return Ok(Some(Role::Anchor));
        }
        if operator {
            return Ok(Some(Role::Operator));
        }
        Ok(self
            .is_admin(room.anchor_id, user_id)
            .await?
            .then_some(Role::Admin))
    }

    // ---- actions ---------------------------------------------------------------------------

    /// Mutes `user_id` for `seconds` (0 = until the room closes). The room must be live.
    /// Returns the mute's end (0 = until the room closes).
    pub async fn mute(
        &self,
        actor: Actor,
        room: &RoomRef,
        user_id: i64,
        seconds: i64,
        nick_name: Option<String>,
    ) -> LivingResult<i64> {
        require_live(room)?;
        if !(0..=rules::MAX_MUTE_SECS).contains(&seconds) {
            return Err(invalid(format!(
                "seconds must be 0 (until the room closes) to {} (30 days)",
                rules::MAX_MUTE_SECS
            )));
        }
        self.check_target(actor, room, user_id, "muted").await?;
        let now = now_ms();
        let until_ms = if seconds == 0 {
            0
        } else {
            now + seconds * 1000
        };
        let (txn, version) = self.begin(room.anchor_id).await?;
        mute::Entity::delete_by_id((room.anchor_id, user_id))
            .exec(&txn)
            .await?;
        mute::ActiveModel {
            anchor_id: Set(room.anchor_id),
            user_id: Set(user_id),
            room_id: Set(room.room_id),
            until_ms: Set(until_ms),
            by_user_id: Set(actor.user_id),
            create_time: Set(now),
        }
        .insert(&txn)
        .await?;
        audit(
            &txn,
            room,
            actor,
            "mute",
            user_id,
            json!({ "seconds": seconds, "untilMs": until_ms }),
        )
        .await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, user_id, version)
            .await;
        self.notice(Notice {
            room_id: room.room_id,
            kind: NoticeKind::UserMuted,
            seconds: None,
            user_id: Some(user_id),
            nick_name,
            until_ms: Some(until_ms),
        })
        .await;
        Ok(until_ms)
    }

    /// Lifts a mute. False when the user was not muted (nothing changes).
    pub async fn unmute(&self, actor: Actor, room: &RoomRef, user_id: i64) -> LivingResult<bool> {
        let (txn, version) = self.begin(room.anchor_id).await?;
        let gone = mute::Entity::delete_by_id((room.anchor_id, user_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if gone == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        audit(&txn, room, actor, "unmute", user_id, json!({})).await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, user_id, version)
            .await;
        Ok(true)
    }

    /// Bans `user_id` from the anchor's rooms (their sessions in the room close, and they cannot
    /// log into its chat again until unbanned). A banned room admin stops being one. False when
    /// already banned.
    pub async fn ban(
        &self,
        actor: Actor,
        room: &RoomRef,
        user_id: i64,
        nick_name: Option<String>,
    ) -> LivingResult<bool> {
        self.check_target(actor, room, user_id, "banned").await?;
        let (txn, version) = self.begin(room.anchor_id).await?;
        if ban::Entity::find_by_id((room.anchor_id, user_id))
            .one(&txn)
            .await?
            .is_some()
        {
            txn.rollback().await?;
            return Ok(false);
        }
        let now = now_ms();
        ban::ActiveModel {
            anchor_id: Set(room.anchor_id),
            user_id: Set(user_id),
            by_user_id: Set(actor.user_id),
            create_time: Set(now),
        }
        .insert(&txn)
        .await?;
        mute::Entity::delete_by_id((room.anchor_id, user_id))
            .exec(&txn)
            .await?;
        let was_admin = admin::Entity::delete_by_id((room.anchor_id, user_id))
            .exec(&txn)
            .await?
            .rows_affected
            > 0;
        audit(
            &txn,
            room,
            actor,
            "ban",
            user_id,
            json!({ "wasAdmin": was_admin }),
        )
        .await?;
        txn.commit().await?;
        self.published(room, ModerationKind::UserBanned, user_id, version)
            .await;
        self.notice(Notice {
            room_id: room.room_id,
            kind: NoticeKind::UserBanned,
            seconds: None,
            user_id: Some(user_id),
            nick_name: nick_name.clone(),
            until_ms: None,
        })
        .await;
        self.living.notifier().notify(OperatorEvent::new(
            "user_banned",
            json!({
                "roomId": room.room_id,
                "anchorId": room.anchor_id,
                "userId": user_id,
                "nickName": nick_name,
                "byUserId": actor.user_id,
                "byRole": actor.role.as_str(),
            }),
        ));
        Ok(true)
    }

    /// Lifts a ban. False when the user was not banned.
    pub async fn unban(&self, actor: Actor, room: &RoomRef, user_id: i64) -> LivingResult<bool> {
        let (txn, version) = self.begin(room.anchor_id).await?;
        let gone = ban::Entity::delete_by_id((room.anchor_id, user_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if gone == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        audit(&txn, room, actor, "unban", user_id, json!({})).await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, user_id, version)
            .await;
        Ok(true)
    }

    /// Recalls messages: a `bizCode 5556` frame `{roomId, msgIds}` goes to the room on the chat
    /// topic (the chat history drops them). The room must be live.
    pub async fn recall(
        &self,
        actor: Actor,
        room: &RoomRef,
        msg_ids: Vec<String>,
    ) -> LivingResult<()> {
        require_live(room)?;
        if msg_ids.is_empty() || msg_ids.len() > frames::MAX_RECALL_IDS {
            return Err(invalid(format!(
                "msgIds must name 1 to {} messages",
                frames::MAX_RECALL_IDS
            )));
        }
        if let Some(bad) = msg_ids.iter().find(|id| !frames::valid_msg_id(id)) {
            return Err(invalid(format!(
                "`{}` is not a message id",
                bad.chars().take(70).collect::<String>()
            )));
        }
        let mut seen = HashSet::new();
        let msg_ids: Vec<String> = msg_ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        // No rule changes: the version stays, only the audit row is written.
        audit(
            self.db(),
            room,
            actor,
            "delete",
            0,
            json!({ "msgIds": msg_ids }),
        )
        .await?;
        let data = Recall {
            room_id: room.room_id,
            msg_ids: msg_ids.clone(),
        };
        self.push(
            frames::BIZ_RECALL,
            room.room_id,
            serde_json::to_string(&data).expect("serializes"),
        )
        .await?;
        self.living.notifier().notify(OperatorEvent::new(
            "message_deleted",
            json!({
                "roomId": room.room_id,
                "anchorId": room.anchor_id,
                "msgIds": msg_ids,
                "byUserId": actor.user_id,
                "byRole": actor.role.as_str(),
            }),
        ));
        Ok(())
    }

    /// Sets the room's slow mode (0 = off). The room must be live. False when unchanged.
    pub async fn slow_mode(
        &self,
        actor: Actor,
        room: &RoomRef,
        seconds: i64,
    ) -> LivingResult<bool> {
        require_live(room)?;
        if !(0..=rules::MAX_SLOW_MODE_SECS as i64).contains(&seconds) {
            return Err(invalid(format!(
                "seconds must be 0 (off) to {}",
                rules::MAX_SLOW_MODE_SECS
            )));
        }
        let (txn, version) = self.begin(room.anchor_id).await?;
        let chan = channel::Entity::find_by_id(room.anchor_id)
            .one(&txn)
            .await?
            .ok_or_else(|| invalid("moderation row vanished; try again"))?;
        let current = if chan.slow_mode_room_id == room.room_id {
            chan.slow_mode_secs as i64
        } else {
            0
        };
        if current == seconds {
            txn.rollback().await?;
            return Ok(false);
        }
        channel::Entity::update_many()
            .col_expr(
                channel::Column::SlowModeRoomId,
                Expr::value(if seconds == 0 { 0 } else { room.room_id }),
            )
            .col_expr(channel::Column::SlowModeSecs, Expr::value(seconds as i32))
            .filter(channel::Column::AnchorId.eq(room.anchor_id))
            .exec(&txn)
            .await?;
        audit(
            &txn,
            room,
            actor,
            "slow_mode",
            0,
            json!({ "seconds": seconds, "before": current }),
        )
        .await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, 0, version)
            .await;
        self.notice(Notice {
            room_id: room.room_id,
            kind: if seconds == 0 {
                NoticeKind::SlowModeOff
            } else {
                NoticeKind::SlowModeOn
            },
            seconds: Some(seconds as u32),
            user_id: None,
            nick_name: None,
            until_ms: None,
        })
        .await;
        Ok(true)
    }

    /// Adds and removes blocked words (as entered; duplicates judged by their folded form).
    /// Every word is checked first and the room's total must stay within the limit: one bad
    /// word refuses the whole request and changes nothing.
    pub async fn words(
        &self,
        actor: Actor,
        room: &RoomRef,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> LivingResult<WordsChange> {
        let max = rules::MAX_WORDS_PER_ROOM;
        if add.len() > max || remove.len() > max {
            return Err(invalid(format!("a room has at most {max} blocked words")));
        }
        let mut to_add = Vec::new();
        let mut add_seen = HashSet::new();
        for w in &add {
            let (word, folded) = rules::validate_word(w).map_err(invalid)?;
            if add_seen.insert(folded.clone()) {
                to_add.push((word, folded));
            }
        }
        let mut to_remove = HashSet::new();
        for w in &remove {
            to_remove.insert(livehouse_moderation::fold(w.trim()).into_owned());
        }
        if to_add.is_empty() && to_remove.is_empty() {
            return Err(invalid("give words to add or remove"));
        }
        if let Some((w, _)) = to_add.iter().find(|(_, f)| to_remove.contains(f)) {
            return Err(invalid(format!("`{w}` is both added and removed")));
        }
        let (txn, version) = self.begin(room.anchor_id).await?;
        let existing: HashSet<String> = word::Entity::find()
            .filter(word::Column::AnchorId.eq(room.anchor_id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|w| w.folded)
            .collect();
        let removed: Vec<String> = to_remove
            .iter()
            .filter(|f| existing.contains(*f))
            .cloned()
            .collect();
        let added: Vec<(String, String)> = to_add
            .into_iter()
            .filter(|(_, f)| !existing.contains(f))
            .collect();
        let total = existing.len() - removed.len() + added.len();
        if total > max {
            txn.rollback().await?;
            return Err(invalid(format!(
                "a room has at most {max} blocked words ({} now, {} more asked)",
                existing.len(),
                added.len()
            )));
        }
        if added.is_empty() && removed.is_empty() {
            txn.rollback().await?;
            return Ok(WordsChange {
                added: 0,
                removed: 0,
                total,
            });
        }
        if !removed.is_empty() {
            word::Entity::delete_many()
                .filter(word::Column::AnchorId.eq(room.anchor_id))
                .filter(word::Column::Folded.is_in(removed.clone()))
                .exec(&txn)
                .await?;
        }
        let now = now_ms();
        for chunk in added.chunks(200) {
            word::Entity::insert_many(chunk.iter().map(|(w, f)| word::ActiveModel {
                anchor_id: Set(room.anchor_id),
                folded: Set(f.clone()),
                word: Set(w.clone()),
                create_time: Set(now),
            }))
            .exec(&txn)
            .await?;
        }
        let added_words: Vec<&String> = added.iter().map(|(w, _)| w).collect();
        audit(
            &txn,
            room,
            actor,
            "words",
            0,
            json!({ "added": added_words, "removed": removed }),
        )
        .await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, 0, version)
            .await;
        Ok(WordsChange {
            added: added.len(),
            removed: removed.len(),
            total,
        })
    }

    /// Appoints (`admin`) or dismisses a room admin. Only the anchor may. False when unchanged.
    pub async fn set_admin(
        &self,
        actor: Actor,
        room: &RoomRef,
        user_id: i64,
        make: bool,
    ) -> LivingResult<bool> {
        if actor.role != Role::Anchor {
            return Err(invalid(
                "only the room's anchor appoints or dismisses room admins",
            ));
        }
        if user_id == room.anchor_id {
            return Err(invalid(
                "the anchor cannot be a room admin of their own room",
            ));
        }
        let (txn, version) = self.begin(room.anchor_id).await?;
        let is = admin::Entity::find_by_id((room.anchor_id, user_id))
            .one(&txn)
            .await?
            .is_some();
        if is == make {
            txn.rollback().await?;
            return Ok(false);
        }
        if make {
            if ban::Entity::find_by_id((room.anchor_id, user_id))
                .one(&txn)
                .await?
                .is_some()
            {
                txn.rollback().await?;
                return Err(invalid(
                    "a banned user cannot be a room admin; unban them first",
                ));
            }
            let n = admin::Entity::find()
                .filter(admin::Column::AnchorId.eq(room.anchor_id))
                .count(&txn)
                .await?;
            if n as usize >= rules::MAX_ADMINS {
                txn.rollback().await?;
                return Err(invalid(format!(
                    "a room has at most {} admins",
                    rules::MAX_ADMINS
                )));
            }
            admin::ActiveModel {
                anchor_id: Set(room.anchor_id),
                user_id: Set(user_id),
                create_time: Set(now_ms()),
            }
            .insert(&txn)
            .await?;
        } else {
            admin::Entity::delete_by_id((room.anchor_id, user_id))
                .exec(&txn)
                .await?;
        }
        audit(
            &txn,
            room,
            actor,
            "admins",
            user_id,
            json!({ "admin": make }),
        )
        .await?;
        txn.commit().await?;
        self.published(room, ModerationKind::RulesChanged, user_id, version)
            .await;
        Ok(true)
    }

    /// Closes a live room as its anchor or an operator: the room moves to the records, its
    /// room-scoped rules end (mutes "until the room closes", slow mode; bans, admins, words and
    /// timed mutes stay with the anchor), gateways and the media path learn it from the bus.
    pub async fn close_room(&self, actor: Actor, room_id: i64) -> LivingResult<RoomRecord> {
        let anchor_id = match actor.role {
            Role::Anchor => actor.user_id,
            Role::Operator => {
                living_room::Entity::find_by_id(room_id)
                    .one(self.db())
                    .await?
                    .ok_or(LivingError::NotFound)?
                    .anchor_id
            }
            Role::Admin => return Err(LivingError::Forbidden),
        };
        let record = self.living.close(anchor_id, room_id).await?;
        let room = RoomRef {
            room_id,
            anchor_id,
            live: false,
        };
        if let Err(e) = self.room_closed(actor, &room).await {
            // The room is closed; the room-scoped rules no longer apply to any live room, and
            // the next change or the sync job tidies up.
            tracing::warn!(room_id, error = %e, "clearing the closed room's rules failed");
        }
        Ok(record)
    }

    async fn room_closed(&self, actor: Actor, room: &RoomRef) -> LivingResult<()> {
        let (txn, version) = self.begin(room.anchor_id).await?;
        mute::Entity::delete_many()
            .filter(mute::Column::AnchorId.eq(room.anchor_id))
            .filter(
                sea_orm::Condition::any()
                    .add(
                        sea_orm::Condition::all()
                            .add(mute::Column::UntilMs.eq(0))
                            .add(mute::Column::RoomId.eq(room.room_id)),
                    )
                    .add(
                        sea_orm::Condition::all()
                            .add(mute::Column::UntilMs.ne(0))
                            .add(mute::Column::UntilMs.lte(now_ms())),
                    ),
            )
            .exec(&txn)
            .await?;
        channel::Entity::update_many()
            .col_expr(channel::Column::SlowModeRoomId, Expr::value(0i64))
            .col_expr(channel::Column::SlowModeSecs, Expr::value(0i32))
            .filter(channel::Column::AnchorId.eq(room.anchor_id))
            .filter(channel::Column::SlowModeRoomId.eq(room.room_id))
            .exec(&txn)
            .await?;
        if actor.role == Role::Operator {
            audit(&txn, room, actor, "close_room", 0, json!({})).await?;
        }
        txn.commit().await?;
        store::write(
            self.living.cache().as_ref(),
            &RoomRules::closed(room.room_id, room.anchor_id, version),
        )
        .await?;
        self.event(ModerationKind::RoomClosed, room.room_id, 0, version)
            .await;
        Ok(())
    }

    // ---- reads -----------------------------------------------------------------------------

    /// The room's moderation state (for a closed room: the anchor's channel-wide rules).
    pub async fn state(&self, room: &RoomRef) -> LivingResult<ModerationState> {
        let rules = self.read_rules(room.room_id, room.anchor_id).await?;
        Ok(ModerationState {
            room_id: room.room_id,
            anchor_id: room.anchor_id,
            live: room.live,
            version: rules.version,
            slow_mode_secs: rules.slow_mode_secs,
            muted: rules.muted,
            banned: rules.banned,
            admins: rules.admins,
            words: rules.words,
        })
    }

    /// The audit log of the anchor's rooms, newest first: at most `limit` (1..=200) rows with
    /// an id below `before` (0 = from the newest).
    pub async fn log(
        &self,
        room: &RoomRef,
        limit: u64,
        before: i64,
    ) -> LivingResult<Vec<LogEntry>> {
        if !(1..=MAX_LOG_PAGE).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {MAX_LOG_PAGE}")));
        }
        let mut q = log::Entity::find().filter(log::Column::AnchorId.eq(room.anchor_id));
        if before > 0 {
            q = q.filter(log::Column::Id.lt(before));
        }
        Ok(q.order_by_desc(log::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(|r| LogEntry {
                id: r.id,
                room_id: r.room_id,
                actor_id: r.actor_id,
                actor_role: r.actor_role,
                action: r.action,
                target_id: r.target_id,
                details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
                at_ms: r.at_ms,
            })
            .collect())
    }

    /// Rebuilds the live room's rule set from SQL and writes it to the cache (newest version
    /// wins). Returns its version. Called after every change, when a room starts (the anchor's
    /// bans and words carry over) and by [`super::sync`].
    pub async fn publish_rules(&self, room_id: i64, anchor_id: i64) -> LivingResult<u64> {
        let rules = self.read_rules(room_id, anchor_id).await?;
        store::write(self.living.cache().as_ref(), &rules).await?;
        Ok(rules.version)
    }

    /// The room's rule set from one consistent read of SQL.
    async fn read_rules(&self, room_id: i64, anchor_id: i64) -> LivingResult<RoomRules> {
        let txn = self.db().begin().await?;
        let chan = channel::Entity::find_by_id(anchor_id).one(&txn).await?;
        let now = now_ms();
        let muted = mute::Entity::find()
            .filter(mute::Column::AnchorId.eq(anchor_id))
            .order_by_asc(mute::Column::UserId)
            .all(&txn)
            .await?
            .into_iter()
            .filter(|m| {
                if m.until_ms == 0 {
                    m.room_id == room_id
                } else {
                    m.until_ms > now
                }
            })
            .map(|m| Mute {
                user_id: m.user_id,
                until_ms: m.until_ms,
            })
            .collect();
        let banned = ban::Entity::find()
            .filter(ban::Column::AnchorId.eq(anchor_id))
            .order_by_asc(ban::Column::UserId)
            .all(&txn)
            .await?
            .into_iter()
            .map(|b| b.user_id)
            .collect();
        let admins = admin::Entity::find()
            .filter(admin::Column::AnchorId.eq(anchor_id))
            .order_by_asc(admin::Column::UserId)
            .all(&txn)
            .await?
            .into_iter()
            .map(|a| a.user_id)
            .collect();
        let words = word::Entity::find()
            .filter(word::Column::AnchorId.eq(anchor_id))
            .order_by_asc(word::Column::CreateTime)
            .order_by_asc(word::Column::Folded)
            .all(&txn)
            .await?
            .into_iter()
            .map(|w| w.word)
            .collect();
        txn.commit().await?;
        let (version, slow_mode_secs) = match &chan {
            Some(c) => (
                c.version.max(0) as u64,
                if c.slow_mode_room_id == room_id {
                    c.slow_mode_secs.max(0) as u32
                } else {
                    0
                },
            ),
            None => (0, 0),
        };
        Ok(RoomRules {
            room_id,
            anchor_id,
            version,
            closed: false,
            slow_mode_secs,
            muted,
            banned,
            admins,
            words,
        })
    }

    // ---- internals -------------------------------------------------------------------------

    /// Refuses targets no one may mute or ban here: the anchor, oneself, and (for a room admin)
    /// another room admin.
    async fn check_target(
        &self,
        actor: Actor,
        room: &RoomRef,
        user_id: i64,
        what: &str,
    ) -> LivingResult<()> {
        if user_id <= 0 {
            return Err(invalid("userId must be a positive integer"));
        }
        if user_id == room.anchor_id {
            return Err(invalid(format!(
                "the room's anchor cannot be {what} in their own room"
            )));
        }
        if user_id == actor.user_id {
            return Err(invalid(format!("you cannot be {what} by yourself")));
        }
        if actor.role == Role::Admin && self.is_admin(room.anchor_id, user_id).await? {
            return Err(invalid(format!(
                "a room admin cannot be {what} by another room admin; ask the anchor"
            )));
        }
        Ok(())
    }

    /// Opens the transaction of a change and bumps the anchor's rule-set version first (so
    /// concurrent changes of one anchor queue on its row). Returns the new version.
    async fn begin(&self, anchor_id: i64) -> LivingResult<(sea_orm::DatabaseTransaction, u64)> {
        // The row exists before the transaction, so the transaction only ever updates it.
        let row = channel::ActiveModel {
            anchor_id: Set(anchor_id),
            version: Set(0),
            slow_mode_room_id: Set(0),
            slow_mode_secs: Set(0),
            update_time: Set(now_ms()),
        };
        match channel::Entity::insert(row).exec(self.db()).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(e) => return Err(e.into()),
        }
        let txn = self.db().begin().await?;
        channel::Entity::update_many()
            .col_expr(
                channel::Column::Version,
                Expr::col(channel::Column::Version).add(1),
            )
            .col_expr(channel::Column::UpdateTime, Expr::value(now_ms()))
            .filter(channel::Column::AnchorId.eq(anchor_id))
            .exec(&txn)
            .await?;
        let version = channel::Entity::find_by_id(anchor_id)
            .one(&txn)
            .await?
            .map(|c| c.version.max(0) as u64)
            .unwrap_or(0);
        Ok((txn, version))
    }

    /// After a committed change: the anchor's live room (if any) gets its new rule set in the
    /// cache, then the event goes on the bus. Failures are logged: SQL holds the change, and the
    /// sync job and the gateways' refresh catch up.
    async fn published(&self, room: &RoomRef, kind: ModerationKind, user_id: i64, version: u64) {
        let live = if room.live {
            Some(room.room_id)
        } else {
            match self.living.by_anchor(room.anchor_id).await {
                Ok(r) => r.map(|r| r.id),
                Err(e) => {
                    tracing::warn!(error = %e, "looking up the anchor's live room failed");
                    None
                }
            }
        };
        let Some(room_id) = live else { return };
        match self.publish_rules(room_id, room.anchor_id).await {
            Ok(v) if v < version => {
                tracing::debug!(room_id, v, version, "a newer change is being published")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(room_id, error = %e, "writing the room's rules to the cache failed")
            }
        }
        self.event(kind, room_id, user_id, version).await;
    }

    async fn event(&self, kind: ModerationKind, room_id: i64, user_id: i64, version: u64) {
        let ev = ModerationEvent {
            kind,
            room_id,
            user_id,
            version,
            at_ms: now_ms(),
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).expect("serializes"));
        if let Err(e) = self.bus.publish(TOPIC_MODERATION, &ev.key(), payload).await {
            tracing::warn!(room_id, error = %e, "moderation event publish failed");
        }
    }

    async fn notice(&self, n: Notice) {
        let room = n.room_id;
        let data = serde_json::to_string(&n).expect("serializes");
        if let Err(e) = self.push(frames::BIZ_NOTICE, room, data).await {
            tracing::warn!(room, error = %e, "moderation notice publish failed");
        }
    }

    /// Publishes a frame for the room's viewers on the chat topic, keyed by room.
    async fn push(&self, biz_code: i32, room_id: i64, data: String) -> LivingResult<()> {
        let ev = ChatEvent {
            msg_id: format!("mod{}", ids::random_hex(8)),
            app_id: APP_ID,
            room_id,
            sender_id: 0,
            biz_code,
            data,
            sent_at_ms: now_ms(),
            origin_gateway: String::new(),
            origin_conn: 0,
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).expect("serializes"));
        self.bus
            .publish(TOPIC_CHAT, &room_id.to_string(), payload)
            .await
            .map_err(|e| LivingError::Unavailable(format!("the chat bus is unavailable: {e}")))
    }
}

fn require_live(room: &RoomRef) -> LivingResult<()> {
    if room.live {
        Ok(())
    } else {
        Err(invalid("the room is not live"))
    }
}

async fn audit<C: ConnectionTrait>(
    db: &C,
    room: &RoomRef,
    actor: Actor,
    action: &str,
    target_id: i64,
    details: Value,
) -> LivingResult<()> {
    log::ActiveModel {
        anchor_id: Set(room.anchor_id),
        room_id: Set(room.room_id),
        actor_id: Set(actor.user_id),
        actor_role: Set(actor.role.as_str().into()),
        action: Set(action.into()),
        target_id: Set(target_id),
        details: Set(details.to_string()),
        at_ms: Set(now_ms()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
