//! Account tiers from the classification engine's label feed (a KEY or BOSS account gets
//! a KAM), the end of a KAM's grace period, and the cursor over that feed.

use clientela_runtime::feed::create_sequence_table;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

const COLUMNS: [&str; 3] = ["account_tier", "tier_at", "kam_until"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = vec![
            // The tier's code as the label feed last gave it.
            string_len_null(t("account_tier"), 32),
            timestamp_with_time_zone_null(t("tier_at")),
            // When the KAM ends if the tier stays below KEY (None: no fall pending).
            timestamp_with_time_zone_null(t("kam_until")),
        ];
        super::add_columns(m, "cartera_customers", columns).await?;
        create_sequence_table(m, "classification_cursor").await?;
        let db = m.get_connection();
        for sql in [
            "CREATE INDEX ix_cartera_customers_kam_until ON cartera_customers (kam_until)",
            "CREATE INDEX ix_cartera_customers_tier ON cartera_customers (account_tier, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("classification_cursor")).to_owned())
            .await?;
        let db = m.get_connection();
        for sql in [
            "DROP INDEX ix_cartera_customers_kam_until",
            "DROP INDEX ix_cartera_customers_tier",
        ] {
            db.execute_unprepared(sql).await?;
        }
        super::drop_columns(m, "cartera_customers", &COLUMNS).await?;
        Ok(())
    }
}
