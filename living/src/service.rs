//! The rooms service: start, close, look up and list rooms.
//!
//! SQL is the truth; the cache holds each room for 5 minutes (with a short-lived empty marker
//! for ids that do not exist) and the per-type room lists that [`crate::lists`] rebuilds. List
//! reads do not touch SQL while the cache works.
//!
//! With the cache down, room reads fall back to SQL instead of failing, and a change whose cache
//! entry could not be deleted is remembered (bounded) and deleted before this process reads the
//! cache again; until then, and for one list rebuild after, its reads go to SQL, so a room closed
//! during an outage is not shown live afterwards. The 5-minute TTL bounds what a crash during an
//! outage could leave behind.
//!
//! Must not: know about HTTP or the current user's session (the api checks identity and the
//! anchor tag; this service checks ownership).

use crate::entity::{living_replay, living_room, living_room_record};
use crate::notify::{Notifier, OperatorEvent};
use livehouse_core::cache::{Cache, CacheError};
use livehouse_core::{ids, time::now_ms};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a room stays in the cache.
pub const ROOM_CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// Most cache deletions remembered for after an outage (the TTL covers the rest).
pub const MAX_PENDING_INVALIDATIONS: usize = 100_000;
/// After deferred deletions are done, list reads stay on SQL this long: the list job rebuilds
/// the cached lists every second.
const LISTS_SETTLE: Duration = Duration::from_secs(2);
/// How long "this id is not a live room" is remembered.
pub const EMPTY_MARKER_TTL: Duration = Duration::from_secs(10);
/// Most rooms a list holds.
pub const LIST_MAX: usize = 1000;
/// Room types.
pub const ROOM_TYPES: [i32; 2] = [1, 2];
const EMPTY_MARKER: &str = "{}";

pub fn room_key(room_id: i64) -> String {
    format!("living:room:{room_id}")
}

pub fn list_key(room_type: i32) -> String {
    format!("living:list:{room_type}")
}

#[derive(Debug, thiserror::Error)]
pub enum LivingError {
    #[error("{0}")]
    Invalid(String),
    #[error("room not found or not live")]
    NotFound,
    #[error("only the room's anchor may do this")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    /// A backend the action needs (the bus) is down; nothing was half-done that matters.
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

pub type LivingResult<T> = Result<T, LivingError>;

/// A live room as the services and the cache see it (the stream key included: never send
/// this whole struct to a viewer; see [`RoomSummary`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: i64,
    pub anchor_id: i64,
    pub anchor_nick_name: String,
    pub anchor_avatar: String,
    #[serde(rename = "type")]
    pub room_type: i32,
    pub status: i32,
    pub room_name: String,
    pub covert_img: String,
    pub watch_num: i64,
    pub good_num: i64,
    pub stream_key: String,
    pub streaming: bool,
    /// The streamer asked for a recording.
    #[serde(default)]
    pub record: bool,
    pub start_time: i64,
}

/// What lists and viewers see of a room.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    pub id: i64,
    pub anchor_id: i64,
    pub anchor_nick_name: String,
    pub anchor_avatar: String,
    #[serde(rename = "type")]
    pub room_type: i32,
    pub room_name: String,
    pub covert_img: String,
    pub watch_num: i64,
    pub good_num: i64,
    pub streaming: bool,
    pub start_time: i64,
}

/// A closed room.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomRecord {
    pub id: i64,
    pub anchor_id: i64,
    pub anchor_nick_name: String,
    #[serde(rename = "type")]
    pub room_type: i32,
    pub room_name: String,
    pub covert_img: String,
    pub watch_num: i64,
    pub good_num: i64,
    pub start_time: i64,
    pub end_time: i64,
    /// The room's recording, when one was saved.
    pub replay: Option<Replay>,
}

/// A saved recording of a room.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub duration_ms: i64,
    pub size_bytes: i64,
}

impl From<living_room::Model> for Room {
    fn from(m: living_room::Model) -> Self {
        Room {
            id: m.id,
            anchor_id: m.anchor_id,
            anchor_nick_name: m.anchor_nick_name,
            anchor_avatar: m.anchor_avatar,
            room_type: m.room_type,
            status: m.status,
            room_name: m.room_name,
            covert_img: m.covert_img,
            watch_num: m.watch_num,
            good_num: m.good_num,
            stream_key: m.stream_key,
            streaming: m.streaming,
            record: m.record,
            start_time: m.start_time,
        }
    }
}

impl Room {
    pub fn summary(&self) -> RoomSummary {
        RoomSummary {
            id: self.id,
            anchor_id: self.anchor_id,
            anchor_nick_name: self.anchor_nick_name.clone(),
            anchor_avatar: self.anchor_avatar.clone(),
            room_type: self.room_type,
            room_name: self.room_name.clone(),
            covert_img: self.covert_img.clone(),
            watch_num: self.watch_num,
            good_num: self.good_num,
            streaming: self.streaming,
            start_time: self.start_time,
        }
    }
}

impl From<living_room_record::Model> for RoomRecord {
    fn from(m: living_room_record::Model) -> Self {
        RoomRecord {
            id: m.id,
            anchor_id: m.anchor_id,
            anchor_nick_name: m.anchor_nick_name,
            room_type: m.room_type,
            room_name: m.room_name,
            covert_img: m.covert_img,
            watch_num: m.watch_num,
            good_num: m.good_num,
            start_time: m.start_time,
            end_time: m.end_time,
            replay: None,
        }
    }
}

/// What the api passes to start a room.
#[derive(Debug, Clone)]
pub struct StartRoom {
    pub anchor_id: i64,
    pub anchor_nick_name: String,
    pub anchor_avatar: String,
    pub room_type: i32,
    pub room_name: String,
    pub covert_img: String,
    /// Record the room's video (`--record per-room`).
    pub record: bool,
}

/// Highest page number a list or record query may ask for. Lists hold at most [`LIST_MAX`]
/// rooms; records are read newest first, and nobody pages 10,000 deep by hand: a bound keeps
/// every offset small and every product below overflow.
pub const MAX_PAGE: u64 = 10_000;
/// Largest page size.
pub const MAX_PAGE_SIZE: u64 = 100;

/// A page request: `page` in 1..=[`MAX_PAGE`], `page_size` in 1..=[`MAX_PAGE_SIZE`], so its
/// offset is at most about 10^6.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: u64,
    pub page_size: u64,
}

impl Page {
    pub fn new(page: u64, page_size: u64) -> LivingResult<Self> {
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(LivingError::Invalid(format!(
                "page must be between 1 and {MAX_PAGE}"
            )));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(LivingError::Invalid(format!(
                "pageSize must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Page { page, page_size })
    }
    fn offset(&self) -> u64 {
        // Both bounded by `new`: at most (10^4 - 1) * 100.
        (self.page - 1) * self.page_size
    }
}

/// Validates room input; the error says which field is wrong.
pub fn validate_start(input: &StartRoom) -> LivingResult<()> {
    if !ROOM_TYPES.contains(&input.room_type) {
        return Err(LivingError::Invalid(
            "type must be 1 (normal) or 2 (PK)".into(),
        ));
    }
    let name = input.room_name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(LivingError::Invalid(
            "roomName must be 1 to 64 characters".into(),
        ));
    }
    if input.covert_img.chars().count() > 512 {
        return Err(LivingError::Invalid(
            "covertImg must be at most 512 characters".into(),
        ));
    }
    Ok(())
}

/// Cache deletions that failed (the cache was down), to be done before the cache is read again.
#[derive(Default)]
struct Deferred {
    keys: std::collections::HashSet<String>,
    /// List reads stay on SQL until then (set when deferred deletions were done).
    lists_settle_until: Option<std::time::Instant>,
}

/// The rooms service. Cheap to clone.
#[derive(Clone)]
pub struct LivingService {
    db: DatabaseConnection,
    cache: Arc<dyn Cache>,
    notifier: Arc<dyn Notifier>,
    deferred: Arc<parking_lot::Mutex<Deferred>>,
}

impl LivingService {
    pub fn new(db: DatabaseConnection, cache: Arc<dyn Cache>) -> Self {
        Self {
            db,
            cache,
            notifier: crate::notify::silent(),
            deferred: Default::default(),
        }
    }

    /// Deletes a room's cache entry after its SQL row changed; when the cache is down, the
    /// deletion is remembered for [`Self::flush_invalidations`] and the change still stands.
    async fn invalidate(&self, key: String) {
        if let Err(e) = self.cache.del(&key).await {
            metrics::counter!("livehouse_room_cache_deferred_total").increment(1);
            tracing::warn!(error = %e, %key, "cache down: room cache deletion deferred");
            let mut d = self.deferred.lock();
            if d.keys.len() < MAX_PENDING_INVALIDATIONS {
                d.keys.insert(key);
            }
        }
    }

    /// Does the deletions deferred during a cache outage. True when none is left (the cache may
    /// be read).
    pub async fn flush_invalidations(&self) -> bool {
        let keys: Vec<String> = {
            let d = self.deferred.lock();
            if d.keys.is_empty() {
                return true;
            }
            d.keys.iter().cloned().collect()
        };
        for key in keys {
            if self.cache.del(&key).await.is_err() {
                return false;
            }
            self.deferred.lock().keys.remove(&key);
        }
        let mut d = self.deferred.lock();
        d.lists_settle_until = Some(std::time::Instant::now() + LISTS_SETTLE);
        d.keys.is_empty()
    }

    /// Whether the cached lists may be read: no deferred deletion, and the list job has had
    /// time to rebuild since the last ones were done.
    async fn lists_fresh(&self) -> bool {
        if !self.flush_invalidations().await {
            return false;
        }
        let mut d = self.deferred.lock();
        match d.lists_settle_until {
            Some(t) if std::time::Instant::now() < t => false,
            Some(_) => {
                d.lists_settle_until = None;
                true
            }
            None => true,
        }
    }

    /// Sends operator events (`room_started`, `room_closed`, `stream_started`,
    /// `stream_stopped`) to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Starts a room for the anchor, with a fresh stream key. One live room per anchor.
    pub async fn start(&self, input: StartRoom) -> LivingResult<Room> {
        validate_start(&input)?;
        let now = now_ms();
        let row = living_room::ActiveModel {
            anchor_id: Set(input.anchor_id),
            anchor_nick_name: Set(input.anchor_nick_name.chars().take(64).collect()),
            anchor_avatar: Set(input.anchor_avatar.chars().take(512).collect()),
            room_type: Set(input.room_type),
            status: Set(1),
            room_name: Set(input.room_name.trim().to_string()),
            covert_img: Set(input.covert_img),
            watch_num: Set(0),
            good_num: Set(0),
            stream_key: Set(ids::random_hex(16)),
            streaming: Set(false),
            record: Set(input.record),
            start_time: Set(now),
            update_time: Set(now),
            ..Default::default()
        };
        let model = match row.insert(&self.db).await {
            Ok(m) => m,
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(LivingError::Conflict(
                    "you already have a live room; close it before starting another".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let room = Room::from(model);
        // Forget any "not found" marker cached for this id.
        self.invalidate(room_key(room.id)).await;
        metrics::counter!("livehouse_rooms_started_total").increment(1);
        self.notifier.notify(OperatorEvent::new(
            "room_started",
            serde_json::json!({
                "roomId": room.id,
                "anchorId": room.anchor_id,
                "roomName": room.room_name,
                "type": room.room_type,
                "startTime": room.start_time,
            }),
        ));
        Ok(room)
    }

    /// Closes a room: moves its row to the record table with the end time, in one transaction.
    pub async fn close(&self, anchor_id: i64, room_id: i64) -> LivingResult<RoomRecord> {
        let txn = self.db.begin().await?;
        let Some(room) = living_room::Entity::find_by_id(room_id).one(&txn).await? else {
            return Err(LivingError::NotFound);
        };
        if room.anchor_id != anchor_id {
            return Err(LivingError::Forbidden);
        }
        let now = now_ms();
        let record = living_room_record::ActiveModel {
            id: Set(room.id),
            anchor_id: Set(room.anchor_id),
            anchor_nick_name: Set(room.anchor_nick_name.clone()),
            anchor_avatar: Set(room.anchor_avatar.clone()),
            room_type: Set(room.room_type),
            status: Set(0),
            room_name: Set(room.room_name.clone()),
            covert_img: Set(room.covert_img.clone()),
            watch_num: Set(room.watch_num),
            good_num: Set(room.good_num),
            start_time: Set(room.start_time),
            end_time: Set(now),
            update_time: Set(now),
        };
        let record = living_room_record::Entity::insert(record)
            .exec_with_returning(&txn)
            .await?;
        let deleted = living_room::Entity::delete_by_id(room.id)
            .exec(&txn)
            .await?;
        if deleted.rows_affected != 1 {
            // A concurrent close won the race; leave everything as it was.
            txn.rollback().await?;
            return Err(LivingError::NotFound);
        }
        txn.commit().await?;
        self.invalidate(room_key(room_id)).await;
        metrics::counter!("livehouse_rooms_closed_total").increment(1);
        if room.streaming {
            // The publisher is cut once the room is gone; its own stop finds no room to change.
            self.notifier.notify(OperatorEvent::new(
                "stream_stopped",
                serde_json::json!({ "roomId": room.id, "anchorId": room.anchor_id }),
            ));
        }
        self.notifier.notify(OperatorEvent::new(
            "room_closed",
            serde_json::json!({
                "roomId": record.id,
                "anchorId": record.anchor_id,
                "startTime": record.start_time,
                "endTime": record.end_time,
            }),
        ));
        Ok(record.into())
    }

    /// The live room with this id, through the cache; from SQL alone while the cache is down
    /// or still owes deletions from an outage.
    pub async fn get(&self, room_id: i64) -> LivingResult<Option<Room>> {
        let key = room_key(room_id);
        let cache_ok = self.flush_invalidations().await;
        if cache_ok {
            match self.cache.get(&key).await {
                Ok(Some(v)) if v == EMPTY_MARKER => return Ok(None),
                Ok(Some(v)) => {
                    if let Ok(room) = serde_json::from_str::<Room>(&v) {
                        return Ok(Some(room));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    metrics::counter!("livehouse_room_cache_fallback_total").increment(1);
                    tracing::warn!(error = %e, room = room_id, "cache down: room read from SQL");
                }
            }
        }
        let room = living_room::Entity::find_by_id(room_id)
            .one(&self.db)
            .await?
            .map(Room::from);
        if cache_ok {
            // Best effort: a failed write only means the next read asks SQL again.
            let written = match &room {
                Some(room) => {
                    let json = serde_json::to_string(room).expect("room serializes");
                    self.cache.set(&key, &json, Some(ROOM_CACHE_TTL)).await
                }
                None => {
                    self.cache
                        .set(&key, EMPTY_MARKER, Some(EMPTY_MARKER_TTL))
                        .await
                }
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, room = room_id, "room not cached");
            }
        }
        Ok(room)
    }

    /// The anchor's live room, if any (straight from SQL: the console needs the truth).
    pub async fn by_anchor(&self, anchor_id: i64) -> LivingResult<Option<Room>> {
        Ok(living_room::Entity::find()
            .filter(living_room::Column::AnchorId.eq(anchor_id))
            .one(&self.db)
            .await?
            .map(Room::from))
    }

    /// The live room owning a stream key (media server publish check).
    pub async fn by_stream_key(&self, stream_key: &str) -> LivingResult<Option<Room>> {
        if stream_key.is_empty() || stream_key.len() > 64 {
            return Ok(None);
        }
        Ok(living_room::Entity::find()
            .filter(living_room::Column::StreamKey.eq(stream_key))
            .one(&self.db)
            .await?
            .map(Room::from))
    }

    /// Marks whether video is arriving for the room. No-op for a room that is not live, or
    /// already in that state; a change is announced as `stream_started` / `stream_stopped`.
    pub async fn set_streaming(&self, room_id: i64, streaming: bool) -> LivingResult<()> {
        let changed = living_room::Entity::update_many()
            .col_expr(living_room::Column::Streaming, Expr::value(streaming))
            .col_expr(living_room::Column::UpdateTime, Expr::value(now_ms()))
            .filter(living_room::Column::Id.eq(room_id))
            .filter(living_room::Column::Streaming.ne(streaming))
            .exec(&self.db)
            .await?
            .rows_affected
            > 0;
        self.invalidate(room_key(room_id)).await;
        if changed {
            self.notifier.notify(OperatorEvent::new(
                if streaming {
                    "stream_started"
                } else {
                    "stream_stopped"
                },
                serde_json::json!({ "roomId": room_id }),
            ));
        }
        Ok(())
    }

    /// Sets the room's current viewer count.
    pub async fn set_watch_num(&self, room_id: i64, watch_num: i64) -> LivingResult<()> {
        living_room::Entity::update_many()
            .col_expr(living_room::Column::WatchNum, Expr::value(watch_num.max(0)))
            .filter(living_room::Column::Id.eq(room_id))
            .exec(&self.db)
            .await?;
        self.invalidate(room_key(room_id)).await;
        Ok(())
    }

    /// One page of the room list of a type, from the cache only. Returns `(rooms, has_next)`.
    pub async fn list(&self, room_type: i32, page: Page) -> LivingResult<(Vec<RoomSummary>, bool)> {
        let (items, has_next) = self.list_json(room_type, page).await?;
        let rooms = items
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        Ok((rooms, has_next))
    }

    /// Like [`Self::list`] but hands out each room as the JSON object the list job wrote, so the
    /// hot list route copies bytes instead of parsing and re-serializing every room.
    pub async fn list_json(&self, room_type: i32, page: Page) -> LivingResult<(Vec<String>, bool)> {
        if !ROOM_TYPES.contains(&room_type) {
            return Err(LivingError::Invalid(
                "type must be 1 (normal) or 2 (PK)".into(),
            ));
        }
        let start = page.offset() as usize;
        // Past the longest list nothing can be found: no cache call.
        if start >= LIST_MAX {
            return Ok((Vec::new(), false));
        }
        // Ask for one extra item to learn whether another page follows.
        let stop = start + page.page_size as usize;
        let mut items = if self.lists_fresh().await {
            match self
                .cache
                .list_range(&list_key(room_type), start, stop)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    metrics::counter!("livehouse_room_list_fallback_total").increment(1);
                    tracing::warn!(error = %e, "cache down: room list read from SQL");
                    self.list_from_sql(room_type, start, stop).await?
                }
            }
        } else {
            self.list_from_sql(room_type, start, stop).await?
        };
        let has_next = items.len() > page.page_size as usize;
        items.truncate(page.page_size as usize);
        Ok((items, has_next))
    }

    /// Items `start..=stop` of a type's list as the list job would write it, read from SQL.
    async fn list_from_sql(
        &self,
        room_type: i32,
        start: usize,
        stop: usize,
    ) -> LivingResult<Vec<String>> {
        let stop = stop.min(LIST_MAX - 1);
        if start > stop {
            return Ok(Vec::new());
        }
        let rows = living_room::Entity::find()
            .filter(living_room::Column::RoomType.eq(room_type))
            .order_by_desc(living_room::Column::StartTime)
            .order_by_desc(living_room::Column::Id)
            .offset(start as u64)
            .limit((stop - start + 1) as u64)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| serde_json::to_string(&Room::from(m).summary()).expect("serializes"))
            .collect())
    }

    /// Rebuilds every type's room list from SQL (newest first, at most [`LIST_MAX`]).
    pub async fn rebuild_lists(&self) -> LivingResult<()> {
        for room_type in ROOM_TYPES {
            let rows = living_room::Entity::find()
                .filter(living_room::Column::RoomType.eq(room_type))
                .order_by_desc(living_room::Column::StartTime)
                .order_by_desc(living_room::Column::Id)
                .limit(LIST_MAX as u64)
                .all(&self.db)
                .await?;
            let items: Vec<String> = rows
                .into_iter()
                .map(|m| serde_json::to_string(&Room::from(m).summary()).expect("serializes"))
                .collect();
            self.cache
                .list_replace(&list_key(room_type), &items)
                .await?;
        }
        Ok(())
    }

    /// Closed rooms of an anchor, newest first. Returns `(records, has_next)`.
    pub async fn records(
        &self,
        anchor_id: i64,
        page: Page,
    ) -> LivingResult<(Vec<RoomRecord>, bool)> {
        let rows = living_room_record::Entity::find()
            .filter(living_room_record::Column::AnchorId.eq(anchor_id))
            .order_by_desc(living_room_record::Column::StartTime)
            .order_by_desc(living_room_record::Column::Id)
            .offset(page.offset())
            .limit(page.page_size + 1)
            .all(&self.db)
            .await?;
        let has_next = rows.len() as u64 > page.page_size;
        let mut list: Vec<RoomRecord> = rows
            .into_iter()
            .take(page.page_size as usize)
            .map(RoomRecord::from)
            .collect();
        let ids: Vec<i64> = list.iter().map(|r| r.id).collect();
        if !ids.is_empty() {
            let replays = living_replay::Entity::find()
                .filter(living_replay::Column::RoomId.is_in(ids))
                .all(&self.db)
                .await?;
            for r in &mut list {
                r.replay = replays.iter().find(|p| p.room_id == r.id).map(|p| Replay {
                    duration_ms: p.duration_ms,
                    size_bytes: p.size_bytes,
                });
            }
        }
        Ok((list, has_next))
    }

    /// Records (or updates) the saved recording of a room.
    pub async fn save_replay(&self, room_id: i64, replay: Replay) -> LivingResult<()> {
        use sea_orm::sea_query::OnConflict;
        let row = living_replay::ActiveModel {
            room_id: Set(room_id),
            duration_ms: Set(replay.duration_ms.max(0)),
            size_bytes: Set(replay.size_bytes.max(0)),
            update_time: Set(now_ms()),
        };
        living_replay::Entity::insert(row)
            .on_conflict(
                OnConflict::column(living_replay::Column::RoomId)
                    .update_columns([
                        living_replay::Column::DurationMs,
                        living_replay::Column::SizeBytes,
                        living_replay::Column::UpdateTime,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Forgets a room's recording (its file was deleted).
    pub async fn delete_replay(&self, room_id: i64) -> LivingResult<()> {
        living_replay::Entity::delete_by_id(room_id)
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Number of live rooms (for metrics and tests).
    /// Every live room's id and stored `watch_num`.
    pub async fn watch_nums(&self) -> LivingResult<Vec<(i64, i64)>> {
        Ok(living_room::Entity::find()
            .select_only()
            .column(living_room::Column::Id)
            .column(living_room::Column::WatchNum)
            .into_tuple::<(i64, i64)>()
            .all(&self.db)
            .await?)
    }

    pub async fn live_count(&self) -> LivingResult<u64> {
        Ok(living_room::Entity::find().count(&self.db).await?)
    }
}
