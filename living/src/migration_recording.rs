//! Migration `m20261202_000001_recording`: the per-room recording choice (`record` on
//! `t_living_room`) and `t_living_replay`, one row per recorded room (its record id is the
//! room id) with the recording's length and size, written by the media role when a recording
//! is saved and deleted by retention. Same code on SQLite and MySQL/MariaDB.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum LivingRoom {
    #[sea_orm(iden = "t_living_room")]
    Table,
    Record,
}

#[derive(DeriveIden)]
enum LivingReplay {
    #[sea_orm(iden = "t_living_replay")]
    Table,
    RoomId,
    DurationMs,
    SizeBytes,
    UpdateTime,
}

pub struct AddRecording;

impl MigrationName for AddRecording {
    fn name(&self) -> &str {
        "m20261202_000001_recording"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRecording {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if !m.has_column("t_living_room", "record").await? {
            m.alter_table(
                Table::alter()
                    .table(LivingRoom::Table)
                    .add_column(
                        ColumnDef::new(LivingRoom::Record)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(LivingReplay::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(LivingReplay::RoomId)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(LivingReplay::DurationMs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingReplay::SizeBytes)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LivingReplay::UpdateTime)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LivingReplay::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(LivingRoom::Table)
                .drop_column(LivingRoom::Record)
                .to_owned(),
        )
        .await
    }
}
