//! The territory service's schema, one file per migration. Migrations run at start-up
//! (or with `clientela migrate`), never by hand.

use sea_orm_migration::prelude::*;

mod m20261204_000001_initial;
mod m20261204_000002_sellers;
mod m20261205_000003_assignments;
mod m20261206_000004_account_tiers;
mod m20261207_000005_realignments;
mod m20261208_000006_worklist;
mod m20261209_000007_command_answers;
mod m20261210_000008_cartera_index;
mod m20261211_000009_explanation_bytes;

/// Adds `columns` to `table`, one statement each (SQLite alters one at a time).
async fn add_columns(
    m: &SchemaManager<'_>,
    table: &str,
    columns: Vec<ColumnDef>,
) -> Result<(), DbErr> {
    for column in columns {
        m.alter_table(
            Table::alter()
                .table(Alias::new(table))
                .add_column(column)
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

/// Drops `columns` from `table`, one statement each.
async fn drop_columns(m: &SchemaManager<'_>, table: &str, columns: &[&str]) -> Result<(), DbErr> {
    for column in columns {
        m.alter_table(
            Table::alter()
                .table(Alias::new(table))
                .drop_column(Alias::new(*column))
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

/// The territory service's migrator.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261204_000001_initial::Migration),
            Box::new(m20261204_000002_sellers::Migration),
            Box::new(m20261205_000003_assignments::Migration),
            Box::new(m20261206_000004_account_tiers::Migration),
            Box::new(m20261207_000005_realignments::Migration),
            Box::new(m20261208_000006_worklist::Migration),
            Box::new(m20261209_000007_command_answers::Migration),
            Box::new(m20261210_000008_cartera_index::Migration),
            Box::new(m20261211_000009_explanation_bytes::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("territory_migrations").into_iden()
    }
}
