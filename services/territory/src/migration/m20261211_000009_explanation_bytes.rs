//! Assignments' explanations as protobuf bytes (`store::explanation`), a third of their
//! JSON's size. Rows written before keep their JSON in `explanation`, which new rows
//! leave empty.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::add_columns(
            m,
            "assignments",
            vec![blob_null(Alias::new("explanation_bytes"))],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_columns(m, "assignments", &["explanation_bytes"]).await
    }
}
