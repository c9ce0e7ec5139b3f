//! `write_counter`: one row counting the transactions that wrote classifications. A
//! Reclassify compares a page's new results with the stored ones as it reads the page
//! ahead, outside the feed lock; the count read in the same snapshot tells it, inside the
//! lock, whether anyone else has written classifications since.

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
                .table(t("write_counter"))
                .col(integer(t("id")).primary_key())
                .col(big_integer(t("last_sequence")))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared("INSERT INTO write_counter (id, last_sequence) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("write_counter")).to_owned())
            .await
    }
}
