//! Indexes in the orders ListCustomers pages by, so a page reads about as many rows as
//! it returns instead of sorting every match (measured in docs/BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::execute_all(
            m,
            &[
                // Status has two live values: a (status, created_at) index cannot give one
                // created_at order across both, so it only made the planner sort.
                "DROP INDEX ix_customers_status_created",
                "CREATE INDEX ix_customers_created ON customers (created_at, id)",
                "CREATE INDEX ix_customers_updated ON customers (updated_at, id)",
                "CREATE INDEX ix_customers_name ON customers (display_name, id)",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::execute_all(
            m,
            &[
                "DROP INDEX ix_customers_name",
                "DROP INDEX ix_customers_updated",
                "DROP INDEX ix_customers_created",
                "CREATE INDEX ix_customers_status_created ON customers (status, created_at, id)",
            ],
        )
        .await
    }
}
