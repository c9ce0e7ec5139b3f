//! Facts format 2: the cost to serve is kept with its currency (the registry made it a
//! money field; it was a bare number read from an attribute). The records are rebuilt,
//! not converted: the facts are emptied and the cursor goes back to the start of the
//! feed, which the engine replays (classifications and their history stay). The horizon
//! is rebuilt with them, so it now covers every fact.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for sql in [
            "DELETE FROM facts",
            "UPDATE feed_cursor SET last_sequence = 0 WHERE id = 1",
            "UPDATE horizon SET earliest_micros = NULL, complete = TRUE WHERE id = 1",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Back to format 1 the same way: empty, for the older binary to replay.
        let db = m.get_connection();
        for sql in [
            "DELETE FROM facts",
            "UPDATE feed_cursor SET last_sequence = 0 WHERE id = 1",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
