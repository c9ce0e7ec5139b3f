//! The territory service's schema, one file per migration. Migrations run at start-up
//! (or with `clientela migrate`), never by hand.

use sea_orm_migration::prelude::*;

mod m20261204_000001_initial;
mod m20261204_000002_sellers;
mod m20261205_000003_assignments;
mod m20261206_000004_account_tiers;
mod m20261207_000005_realignments;

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
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("territory_migrations").into_iden()
    }
}
