//! Schema of the moderation tables (see [`super::entity`]), one migration of the living
//! migrator, the same code on SQLite and MySQL/MariaDB.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Channel {
    #[sea_orm(iden = "t_moderation_channel")]
    Table,
    AnchorId,
    Version,
    SlowModeRoomId,
    SlowModeSecs,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Mute {
    #[sea_orm(iden = "t_moderation_mute")]
    Table,
    AnchorId,
    UserId,
    RoomId,
    UntilMs,
    ByUserId,
    CreateTime,
}

#[derive(DeriveIden)]
enum Ban {
    #[sea_orm(iden = "t_moderation_ban")]
    Table,
    AnchorId,
    UserId,
    ByUserId,
    CreateTime,
}

#[derive(DeriveIden)]
enum Admin {
    #[sea_orm(iden = "t_moderation_admin")]
    Table,
    AnchorId,
    UserId,
    CreateTime,
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)] // `Word` is the column's name.
enum Word {
    #[sea_orm(iden = "t_moderation_word")]
    Table,
    AnchorId,
    Folded,
    Word,
    CreateTime,
}

#[derive(DeriveIden)]
enum Log {
    #[sea_orm(iden = "t_moderation_log")]
    Table,
    Id,
    AnchorId,
    RoomId,
    ActorId,
    ActorRole,
    Action,
    TargetId,
    Details,
    AtMs,
}

pub struct CreateModeration;

impl MigrationName for CreateModeration {
    fn name(&self) -> &str {
        "m20261202_000001_create_moderation"
    }
}

fn big(c: impl IntoIden) -> ColumnDef {
    let mut d = ColumnDef::new(c);
    d.big_integer().not_null();
    d
}

#[async_trait::async_trait]
impl MigrationTrait for CreateModeration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Channel::Table)
                .if_not_exists()
                .col(big(Channel::AnchorId).primary_key())
                .col(big(Channel::Version).default(0))
                .col(big(Channel::SlowModeRoomId).default(0))
                .col(
                    ColumnDef::new(Channel::SlowModeSecs)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(big(Channel::UpdateTime))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Mute::Table)
                .if_not_exists()
                .col(big(Mute::AnchorId))
                .col(big(Mute::UserId))
                .col(big(Mute::RoomId))
                .col(big(Mute::UntilMs))
                .col(big(Mute::ByUserId))
                .col(big(Mute::CreateTime))
                .primary_key(Index::create().col(Mute::AnchorId).col(Mute::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Ban::Table)
                .if_not_exists()
                .col(big(Ban::AnchorId))
                .col(big(Ban::UserId))
                .col(big(Ban::ByUserId))
                .col(big(Ban::CreateTime))
                .primary_key(Index::create().col(Ban::AnchorId).col(Ban::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Admin::Table)
                .if_not_exists()
                .col(big(Admin::AnchorId))
                .col(big(Admin::UserId))
                .col(big(Admin::CreateTime))
                .primary_key(Index::create().col(Admin::AnchorId).col(Admin::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Word::Table)
                .if_not_exists()
                .col(big(Word::AnchorId))
                // 50 characters folded may grow a little (NFKC); 128 leaves room.
                .col(ColumnDef::new(Word::Folded).string_len(128).not_null())
                .col(ColumnDef::new(Word::Word).string_len(64).not_null())
                .col(big(Word::CreateTime))
                .primary_key(Index::create().col(Word::AnchorId).col(Word::Folded))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Log::Table)
                .if_not_exists()
                .col(big(Log::Id).auto_increment().primary_key())
                .col(big(Log::AnchorId))
                .col(big(Log::RoomId))
                .col(big(Log::ActorId))
                .col(ColumnDef::new(Log::ActorRole).string_len(16).not_null())
                .col(ColumnDef::new(Log::Action).string_len(32).not_null())
                .col(big(Log::TargetId).default(0))
                .col(ColumnDef::new(Log::Details).text().not_null())
                .col(big(Log::AtMs))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_moderation_log_anchor")
                .table(Log::Table)
                .col(Log::AnchorId)
                .col(Log::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Log::Table.into_iden(),
            Word::Table.into_iden(),
            Admin::Table.into_iden(),
            Ban::Table.into_iden(),
            Mute::Table.into_iden(),
            Channel::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
