//! Schema of `t_user`. Bookkeeping in `seaql_migrations_api`, apart from other roles'.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateUsers),
            Box::new(super::suspension::CreateSuspensions),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("seaql_migrations_api").into_iden()
    }
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)] // `UserId` is the column's name.
enum User {
    #[sea_orm(iden = "t_user")]
    Table,
    UserId,
    Username,
    PasswordHash,
    NickName,
    Avatar,
    Tags,
    CreateTime,
}

struct CreateUsers;

impl MigrationName for CreateUsers {
    fn name(&self) -> &str {
        "m20261125_000001_create_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(User::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(User::UserId)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(User::Username)
                        .string_len(32)
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(User::PasswordHash)
                        .string_len(255)
                        .not_null(),
                )
                .col(ColumnDef::new(User::NickName).string_len(64).not_null())
                .col(
                    ColumnDef::new(User::Avatar)
                        .string_len(512)
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(User::Tags)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(User::CreateTime).big_integer().not_null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(User::Table).to_owned())
            .await
    }
}
