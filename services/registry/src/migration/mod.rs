//! The registry's schema, one file per migration. Migrations run at start-up (or with
//! `clientela migrate`), never by hand.

use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_list_indexes;
mod m20261122_000003_event_wire;
mod m20261122_000004_key_probe_index;
mod m20261202_000005_request_fingerprint;
mod m20261202_000006_account_fields;

/// Runs `statements` in order.
async fn execute_all(m: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// The registry's migrator.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_list_indexes::Migration),
            Box::new(m20261122_000003_event_wire::Migration),
            Box::new(m20261122_000004_key_probe_index::Migration),
            Box::new(m20261202_000005_request_fingerprint::Migration),
            Box::new(m20261202_000006_account_fields::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("registry_migrations").into_iden()
    }
}
