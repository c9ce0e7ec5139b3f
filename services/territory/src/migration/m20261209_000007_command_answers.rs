//! The answers of commands sent with a `request_id` (assign, unpin, claim, transfer,
//! offboard), so a retry gets the first answer instead of running again.

use clientela_runtime::idempotency::answers_table;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(answers_table()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("command_answers"))
                .to_owned(),
        )
        .await
    }
}
