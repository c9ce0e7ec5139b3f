//! The cost to serve and the key-account and high-expectations flags become fields of a
//! customer (they were read from the free-form attributes `cost_to_serve`,
//! `key_account` and `high_expectations`). Stored rows and events keep their JSON: the
//! attributes are lifted into the fields as they are read
//! (`CustomerFields::lift_legacy`), and events that carry them lose their stored wire
//! form, so the feed encodes them again, lifted.

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
        for column in [
            text_null(t("cost_to_serve")),
            boolean(t("key_account")).default(false).to_owned(),
            boolean(t("high_expectations")).default(false).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(t("customers"))
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        super::execute_all(
            m,
            &[
                "UPDATE events SET wire = NULL WHERE payload LIKE '%\"key_account\"%' \
               OR payload LIKE '%\"high_expectations\"%' OR payload LIKE '%\"cost_to_serve%'",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["cost_to_serve", "key_account", "high_expectations"] {
            m.alter_table(
                Table::alter()
                    .table(t("customers"))
                    .drop_column(t(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
