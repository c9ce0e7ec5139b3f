//! `horizon`: the earliest instant of any fact the engine holds, kept as the feed is
//! applied, so an `as_of` so early that no fact could be in its window is refused.
//! `complete` says the horizon has seen every fact: true when the table is created
//! before any fact is; an engine upgraded with facts already stored leaves it false
//! (the facts are binary, so the migration cannot read their instants) and then no lower
//! bound applies.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(t("horizon"))
                .col(integer(t("id")).primary_key())
                .col(big_integer_null(t("earliest_micros")))
                .col(boolean(t("complete")))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO horizon (id, earliest_micros, complete) \
                 SELECT 1, NULL, NOT EXISTS (SELECT 1 FROM facts)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("horizon")).to_owned())
            .await
    }
}
