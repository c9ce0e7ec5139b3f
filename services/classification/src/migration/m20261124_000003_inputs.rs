//! Classifications stored as the rules' inputs instead of the rendered result:
//! - `classifications.inputs`: the inputs (features and flags), postcard-encoded, about
//!   a tenth of the compressed result. The explanations are rendered again when read;
//!   rows written before keep their `data` or `body` until classified again.
//! - `classifications.population_id`: the population the labels were decided against
//!   (`population` now keeps every population computed, one row each).
//! - `classifications.codes`: every label code in one column (`L1|...|L7|,T1,T2,`), what
//!   a reclassification compares the new labels with; the label columns stay for their
//!   indexes. Filled here from the label columns.

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
        // SQLite adds one column per ALTER TABLE.
        for column in [
            blob_null(t("inputs")),
            big_integer_null(t("population_id")),
            text(t("codes")).default("").to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(t("classifications"))
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.get_connection()
            .execute_unprepared(
                "UPDATE classifications SET codes = lifecycle_stage || '|' || activity || '|' \
                 || satisfaction || '|' || volume || '|' || influence || '|' || account_tier \
                 || '|' || rfm_segment || '|' || traits",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["codes", "population_id", "inputs"] {
            m.alter_table(
                Table::alter()
                    .table(t("classifications"))
                    .drop_column(t(column))
                    .to_owned(),
            )
            .await?;
        }
        m.get_connection()
            .execute_unprepared(
                "DELETE FROM population WHERE id <> (SELECT MAX(id) FROM population)",
            )
            .await?;
        m.get_connection()
            .execute_unprepared("UPDATE population SET id = 1")
            .await?;
        Ok(())
    }
}
