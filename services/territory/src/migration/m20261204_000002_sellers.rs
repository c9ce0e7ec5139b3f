//! Sellers, with the built-in house seller that stands for the company.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The house seller's id and name (crate::model's HOUSE_SELLER and HOUSE_NAME: a
/// migration keeps its own copy, a snapshot of its time).
const HOUSE_SELLER: uuid::Uuid = uuid::Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);
const HOUSE_NAME: &str = "Cartera de la empresa (house)";

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
                .table(t("sellers"))
                .col(uuid(t("id")).primary_key())
                .col(text(t("display_name")))
                .col(text_null(t("email")))
                .col(text_null(t("token_name")))
                // The token name while the seller has not departed: unique, so two
                // sellers never answer to one token.
                .col(text_null(t("token_key")).unique_key())
                // JSON lists.
                .col(text(t("specialties")))
                .col(text(t("territory_codes")))
                .col(boolean(t("kam")))
                .col(big_integer(t("capacity")))
                // ACTIVE, ON_LEAVE or DEPARTED.
                .col(string_len(t("status"), 16))
                .col(boolean(t("house")))
                .col(text_null(t("request_id")).unique_key())
                .col(big_integer_null(t("request_fingerprint")))
                .col(big_integer(t("version")))
                .col(timestamp_with_time_zone(t("created_at")))
                .col(timestamp_with_time_zone(t("updated_at")))
                .to_owned(),
        )
        .await?;
        let now = chrono::Utc::now();
        let house = Query::insert()
            .into_table(t("sellers"))
            .columns([
                t("id"),
                t("display_name"),
                t("specialties"),
                t("territory_codes"),
                t("kam"),
                t("capacity"),
                t("status"),
                t("house"),
                t("version"),
                t("created_at"),
                t("updated_at"),
            ])
            .values([
                HOUSE_SELLER.into(),
                HOUSE_NAME.into(),
                "[]".into(),
                "[]".into(),
                false.into(),
                0i64.into(),
                "ACTIVE".into(),
                true.into(),
                1i64.into(),
                now.into(),
                now.into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned();
        m.exec_stmt(house).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("sellers")).to_owned())
            .await
    }
}
