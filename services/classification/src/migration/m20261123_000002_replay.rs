//! Two changes to the projection, both for the speed of replaying the feed:
//! - `pending`: customers whose facts changed since they were last classified. The feed's
//!   batches only update the facts (and mark the customers here, in the same
//!   transaction); the marked customers are classified when the consumer has caught up,
//!   so replaying a long history never records the passing labels of a past already over.
//! - `facts` holds each customer's record in a compact binary form instead of JSON. The
//!   records are rebuilt, not converted: the cursor goes back to zero and the engine
//!   replays the feed (classifications and their history stay; a replayed customer whose
//!   labels come out the same records no change).
//! - `classifications.data`: the result's JSON, LZ4-compressed, in place of `body` (left
//!   empty); rows written before keep their `body` until classified again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

/// Replaces `facts` with an empty table whose record column is `data`, and moves the
/// cursor back to the start of the feed so the engine refills it.
async fn refill_facts(m: &SchemaManager<'_>, data: ColumnDef) -> Result<(), DbErr> {
    m.drop_table(Table::drop().table(t("facts")).to_owned())
        .await?;
    m.create_table(
        Table::create()
            .table(t("facts"))
            .col(uuid(t("customer_id")).primary_key())
            .col(data)
            .to_owned(),
    )
    .await?;
    m.get_connection()
        .execute_unprepared("UPDATE feed_cursor SET last_sequence = 0 WHERE id = 1")
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(t("pending"))
                .col(uuid(t("customer_id")).primary_key())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(t("classifications"))
                .add_column(blob_null(t("data")))
                .to_owned(),
        )
        .await?;
        refill_facts(m, blob(t("data"))).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(t("classifications"))
                .drop_column(t("data"))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(t("pending")).to_owned())
            .await?;
        refill_facts(m, text(t("body"))).await
    }
}
