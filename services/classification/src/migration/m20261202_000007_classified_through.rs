//! `classified_through`: the registry sequence up to which every event's customers are
//! classified (the feed applied to the facts and no customer left pending), so a read
//! that names a registry write's sequence can wait for it (read your own writes).

use clientela_runtime::feed::create_sequence_table;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_sequence_table(m, "classified_through").await?;
        // Where the facts stand now, if nothing is pending.
        m.get_connection()
            .execute_unprepared(
                "UPDATE classified_through SET last_sequence = \
                 (SELECT last_sequence FROM feed_cursor WHERE id = 1) \
                 WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM pending)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("classified_through"))
                .to_owned(),
        )
        .await
    }
}
