//! Platform-wide suspension of accounts by operators: `t_user_suspension` (one row per
//! suspended user: who suspended, why, when) is the truth. A suspended account cannot sign in or
//! get an IM token; its existing sessions are refused by every api instance within
//! [`REFRESH_EVERY`] (at once on the one that suspended it), through [`Suspensions`], an
//! in-process set reloaded from SQL; the cache set [`keys::SUSPENDED_USERS`] and a
//! `user_suspended` event on the moderation topic tell the gateways to close its IM sessions
//! and refuse its logins.
//!
//! Must not: delete or change the account itself.

use crate::error::{ApiError, ApiResult};
use bytes::Bytes;
use livehouse_core::bus::{Bus, TOPIC_MODERATION};
use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, ModerationEvent, ModerationKind};
use livehouse_core::time::now_ms;
use parking_lot::RwLock;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set, SqlErr};
use sea_orm_migration::prelude::*;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How often each api instance rereads the suspended accounts.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// `t_user_suspension`.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_user_suspension")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub by_user_id: i64,
        pub reason: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(DeriveIden)]
enum Suspension {
    #[sea_orm(iden = "t_user_suspension")]
    Table,
    UserId,
    ByUserId,
    Reason,
    CreateTime,
}

/// The migration creating `t_user_suspension`.
pub struct CreateSuspensions;

impl MigrationName for CreateSuspensions {
    fn name(&self) -> &str {
        "m20261202_000001_create_user_suspension"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSuspensions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Suspension::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Suspension::UserId)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(Suspension::ByUserId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Suspension::Reason)
                        .string_len(256)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(Suspension::CreateTime)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Suspension::Table).to_owned())
            .await
    }
}

/// Whether the account is suspended, from SQL (sign-in and IM token issue ask this).
pub async fn is_suspended(db: &DatabaseConnection, user_id: i64) -> ApiResult<bool> {
    Ok(entity::Entity::find_by_id(user_id).one(db).await?.is_some())
}

/// Refuses a suspended account with 403.
pub async fn refuse_suspended(db: &DatabaseConnection, user_id: i64) -> ApiResult<()> {
    if is_suspended(db, user_id).await? {
        return Err(ApiError::Forbidden(
            "this account is suspended; contact the operators".into(),
        ));
    }
    Ok(())
}

/// One suspension change.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub user_id: i64,
    /// The operator.
    pub by_user_id: i64,
    pub reason: &'a str,
    /// True to suspend, false to reinstate.
    pub suspended: bool,
}

/// The suspended accounts as this api instance knows them (for refusing existing sessions
/// without a query per request).
#[derive(Default)]
pub struct Suspensions {
    ids: RwLock<HashSet<i64>>,
}

impl Suspensions {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn contains(&self, user_id: i64) -> bool {
        self.ids.read().contains(&user_id)
    }

    /// Rereads the set from SQL.
    pub async fn reload(&self, db: &DatabaseConnection) -> ApiResult<usize> {
        let ids: HashSet<i64> = entity::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let n = ids.len();
        *self.ids.write() = ids;
        Ok(n)
    }

    /// Reloads every [`REFRESH_EVERY`] until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, db: DatabaseConnection, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.reload(&db).await {
                        tracing::warn!(error = %e, "reloading suspended accounts failed");
                    }
                }
            }
        }
    }

    /// Suspends or reinstates an account: SQL, this instance's set, the cache set the gateways
    /// read, and an event for them. False when nothing changed.
    pub async fn set(
        &self,
        db: &DatabaseConnection,
        cache: &dyn Cache,
        bus: &dyn Bus,
        change: Change<'_>,
    ) -> ApiResult<bool> {
        let Change {
            user_id,
            by_user_id,
            reason,
            suspended: on,
        } = change;
        let changed = if on {
            let row = entity::ActiveModel {
                user_id: Set(user_id),
                by_user_id: Set(by_user_id),
                reason: Set(reason.chars().take(256).collect()),
                create_time: Set(now_ms()),
            };
            match row.insert(db).await {
                Ok(_) => true,
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    false
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            entity::Entity::delete_by_id(user_id)
                .exec(db)
                .await?
                .rows_affected
                > 0
        };
        {
            let mut ids = self.ids.write();
            if on {
                ids.insert(user_id);
            } else {
                ids.remove(&user_id);
            }
        }
        // The cache and the event also go out when nothing changed in SQL: an earlier call
        // may have failed after its SQL write.
        let member = [user_id.to_string()];
        if on {
            cache.set_add(keys::SUSPENDED_USERS, &member).await?;
        } else {
            cache.set_remove(keys::SUSPENDED_USERS, &member).await?;
        }
        let ev = ModerationEvent {
            kind: if on {
                ModerationKind::UserSuspended
            } else {
                ModerationKind::UserUnsuspended
            },
            room_id: 0,
            user_id,
            version: 0,
            at_ms: now_ms(),
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).expect("serializes"));
        if let Err(e) = bus.publish(TOPIC_MODERATION, &ev.key(), payload).await {
            tracing::warn!(user_id, error = %e, "suspension event publish failed");
        }
        Ok(changed)
    }
}
