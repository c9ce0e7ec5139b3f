//! Territory models and their territories.

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
                .table(t("territory_models"))
                .col(uuid(t("id")).primary_key())
                .col(text(t("display_name")))
                // PLANNING, ACTIVE or ARCHIVED.
                .col(string_len(t("state"), 16))
                .col(uuid_null(t("copied_from")))
                .col(text_null(t("request_id")).unique_key())
                .col(big_integer_null(t("request_fingerprint")))
                // Bumped by every change to the model or its territories: the etag, and
                // the row lock that serializes a model's edits.
                .col(big_integer(t("version")))
                .col(timestamp_with_time_zone(t("created_at")))
                .col(timestamp_with_time_zone(t("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("territories"))
                .col(uuid(t("model_id")))
                .col(string_len(t("code"), 64))
                .col(text(t("display_name")))
                .col(string_len_null(t("parent_code"), 64))
                // The address criteria (JSON), folded as they are compared.
                .col(text(t("criteria")))
                .col(integer(t("priority")))
                .col(big_integer(t("version")))
                .col(timestamp_with_time_zone(t("created_at")))
                .col(timestamp_with_time_zone(t("updated_at")))
                .primary_key(Index::create().col(t("model_id")).col(t("code")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("territories"), t("model_id"))
                        .to(t("territory_models"), t("id")),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("territories")).to_owned())
            .await?;
        m.drop_table(Table::drop().table(t("territory_models")).to_owned())
            .await
    }
}
