//! A tag filter on ListCustomers walks the page order and probes each customer's keys:
//! with `(customer_id, kind, value)` the probe reads the index alone, not the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::execute_all(
            m,
            &[
                "DROP INDEX ix_customer_keys_customer",
                "CREATE INDEX ix_customer_keys_customer ON customer_keys (customer_id, kind, value)",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::execute_all(
            m,
            &[
                "DROP INDEX ix_customer_keys_customer",
                "CREATE INDEX ix_customer_keys_customer ON customer_keys (customer_id)",
            ],
        )
        .await
    }
}
