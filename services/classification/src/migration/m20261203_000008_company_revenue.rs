//! `company_revenue`: the company's net revenue per currency and UTC hour of purchase,
//! kept in the transaction that applies each registry event, so the share of sales is
//! measured against the revenue the facts hold at that moment, not against the last
//! population's (TAXONOMY "Population-relative labels must never be false").
//! `company_revenue_ledger.complete` says the table holds every fact: true when it is
//! created before any fact is; an upgraded engine (facts are binary, which SQL cannot
//! read) fills it from the facts at start-up instead of replaying the feed. Each
//! classification keeps the company revenue it was decided against.

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
                .table(t("company_revenue"))
                .col(string(t("currency_code")))
                .col(big_integer(t("hour")))
                .col(big_integer(t("amount_minor")))
                .primary_key(Index::create().col(t("currency_code")).col(t("hour")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("company_revenue_ledger"))
                .col(integer(t("id")).primary_key())
                .col(boolean(t("complete")))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO company_revenue_ledger (id, complete) \
                 SELECT 1, NOT EXISTS (SELECT 1 FROM facts)",
            )
            .await?;
        m.alter_table(
            Table::alter()
                .table(t("classifications"))
                .add_column(big_integer_null(t("company_revenue")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(t("classifications"))
                .drop_column(t("company_revenue"))
                .to_owned(),
        )
        .await?;
        for table in ["company_revenue_ledger", "company_revenue"] {
            m.drop_table(Table::drop().table(t(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
