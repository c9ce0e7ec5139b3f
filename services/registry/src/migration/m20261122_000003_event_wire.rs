//! Each event also keeps its encoded `clientela.registry.v1.Event`, so the feed sends
//! bytes it already has instead of parsing JSON and converting at every read (measured
//! in docs/BENCHMARKS.md). The JSON stays the record; `wire` is NULL for events written
//! before this migration, and the feed encodes those when it reads them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Wire,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Events::Table)
                .add_column(ColumnDef::new(Events::Wire).binary().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Events::Table)
                .drop_column(Events::Wire)
                .to_owned(),
        )
        .await
    }
}
