//! # livehouse-living
//!
//! Rooms. Owns the `t_living_room` / `t_living_room_record` / `t_living_replay` tables
//! ([`entity`], [`migration`], [`migration_recording`]), the rooms service ([`LivingService`]:
//! start, close, cached look-up, cached lists, records, replays), the scheduled job that rebuilds
//! the room lists ([`lists`]) and keeps each room's viewer count from the presence store
//! ([`watch`]).
//!
//! Moderation state (mutes, bans, slow mode, words, room admins, the audit log) is here too
//! ([`moderation`]), and operator events go out through a [`notify::Notifier`].
//!
//! Must not: speak HTTP (that is `livehouse-api`) or read the users table (the anchor's name is
//! copied into the room at start, so list reads need nothing else).

pub mod entity;
pub mod lists;
pub mod migration;
pub mod migration_recording;
pub mod moderation;
pub mod notify;
pub mod service;
pub mod watch;

pub use moderation::ModerationService;
pub use service::{
    LivingError, LivingResult, LivingService, Page, Replay, Room, RoomRecord, RoomSummary,
    StartRoom, MAX_PAGE, MAX_PAGE_SIZE,
};

/// Creates or upgrades the rooms tables.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm_migration::MigratorTrait;
    migration::Migrator::up(db, None).await
}
