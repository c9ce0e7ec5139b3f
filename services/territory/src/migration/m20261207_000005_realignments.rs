//! The realignments applied from a preview, by the preview's token: a retried apply
//! answers with what the first one did instead of finding its own preview stale.

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
                .table(t("realignments"))
                .col(text(t("preview_token")).primary_key())
                .col(uuid(t("model_id")))
                .col(uuid_null(t("archived_model_id")))
                .col(big_integer(t("customers")))
                .col(big_integer(t("placed")))
                .col(big_integer(t("moved")))
                .col(big_integer(t("overflowed")))
                .col(big_integer(t("to_house")))
                .col(big_integer(t("pins_held")))
                .col(timestamp_with_time_zone(t("applied_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("realignments")).to_owned())
            .await
    }
}
