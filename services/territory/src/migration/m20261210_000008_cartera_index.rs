//! A seller's assignments indexed by customer: a cartera page (by customer, then
//! sequence) reads its hundred rows in order and stops, where the index by `valid_from`
//! read every interval the seller ever held and sorted them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX ix_assignments_seller")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_assignments_seller_customer ON assignments \
             (seller_id, customer_id, sequence)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX ix_assignments_seller_customer")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_assignments_seller ON assignments (seller_id, valid_from)",
        )
        .await?;
        Ok(())
    }
}
