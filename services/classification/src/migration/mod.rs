//! The classification engine's schema, one file per migration. Migrations run at
//! start-up (or with `clientela migrate`), never by hand.

use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261123_000002_replay;
mod m20261124_000003_inputs;
mod m20261125_000004_write_counter;
mod m20261202_000005_horizon;
mod m20261202_000006_facts_v2;
mod m20261202_000007_classified_through;
mod m20261203_000008_company_revenue;

/// The classification engine's migrator.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261123_000002_replay::Migration),
            Box::new(m20261124_000003_inputs::Migration),
            Box::new(m20261125_000004_write_counter::Migration),
            Box::new(m20261202_000005_horizon::Migration),
            Box::new(m20261202_000006_facts_v2::Migration),
            Box::new(m20261202_000007_classified_through::Migration),
            Box::new(m20261203_000008_company_revenue::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("classification_migrations").into_iden()
    }
}
