//! Schema of the rooms tables, as sea-orm migrations. The same code creates them on SQLite and
//! MySQL/MariaDB. Its bookkeeping table is `seaql_migrations_living`, apart from other roles'.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateRooms),
            Box::new(crate::moderation::migration::CreateModeration),
            Box::new(crate::migration_recording::AddRecording),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("seaql_migrations_living").into_iden()
    }
}

#[derive(DeriveIden)]
enum LivingRoom {
    #[sea_orm(iden = "t_living_room")]
    Table,
    Id,
    AnchorId,
    AnchorNickName,
    AnchorAvatar,
    #[sea_orm(iden = "type")]
    Type,
    Status,
    RoomName,
    CovertImg,
    WatchNum,
    GoodNum,
    StreamKey,
    Streaming,
    StartTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum LivingRoomRecord {
    #[sea_orm(iden = "t_living_room_record")]
    Table,
    Id,
    AnchorId,
    AnchorNickName,
    AnchorAvatar,
    #[sea_orm(iden = "type")]
    Type,
    Status,
    RoomName,
    CovertImg,
    WatchNum,
    GoodNum,
    StartTime,
    EndTime,
    UpdateTime,
}

struct CreateRooms;

impl MigrationName for CreateRooms {
    fn name(&self) -> &str {
        "m20261125_000001_create_rooms"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRooms {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LivingRoom::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(LivingRoom::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(LivingRoom::AnchorId)
                        .big_integer()
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(LivingRoom::AnchorNickName)
                        .string_len(64)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoom::AnchorAvatar)
                        .string_len(512)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoom::Type)
                        .integer()
                        .not_null()
                        .default(1),
                )
                .col(
                    ColumnDef::new(LivingRoom::Status)
                        .integer()
                        .not_null()
                        .default(1),
                )
                .col(
                    ColumnDef::new(LivingRoom::RoomName)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoom::CovertImg)
                        .string_len(512)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoom::WatchNum)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(LivingRoom::GoodNum)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(LivingRoom::StreamKey)
                        .string_len(64)
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(LivingRoom::Streaming)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(LivingRoom::StartTime)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoom::UpdateTime)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_living_room_type_start")
                .table(LivingRoom::Table)
                .col(LivingRoom::Type)
                .col(LivingRoom::StartTime)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LivingRoomRecord::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(LivingRoomRecord::Id)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::AnchorId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::AnchorNickName)
                        .string_len(64)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::AnchorAvatar)
                        .string_len(512)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::Type)
                        .integer()
                        .not_null()
                        .default(1),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::Status)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::RoomName)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::CovertImg)
                        .string_len(512)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::WatchNum)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::GoodNum)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::StartTime)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::EndTime)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingRoomRecord::UpdateTime)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_living_record_anchor_start")
                .table(LivingRoomRecord::Table)
                .col(LivingRoomRecord::AnchorId)
                .col(LivingRoomRecord::StartTime)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LivingRoomRecord::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(LivingRoom::Table).to_owned())
            .await
    }
}
