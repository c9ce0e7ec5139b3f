//! `request_fingerprint` beside every `request_id`: the same key sent with a different
//! request is ALREADY_EXISTS instead of an answer about another resource. Rows written
//! before have none and replay as before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["customers", "surveys", "complaints"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(
                        ColumnDef::new(Alias::new("request_fingerprint"))
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .drop_column(Alias::new("request_fingerprint"))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
