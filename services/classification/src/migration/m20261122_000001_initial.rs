//! The projection of the registry's feed (facts per customer and the feed cursor), the
//! policy versions, the population's cut-offs, the current classifications and the
//! label change history with its sequence counter.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

/// The label columns of `classifications`, one per single-label dimension.
const LABEL_COLUMNS: [&str; 7] = [
    "lifecycle_stage",
    "activity",
    "satisfaction",
    "volume",
    "influence",
    "account_tier",
    "rfm_segment",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Everything the engine knows of a customer, as one JSON document: an event
        // reads and writes one row, and the features at any instant come from it.
        m.create_table(
            Table::create()
                .table(t("facts"))
                .col(uuid(t("customer_id")).primary_key())
                .col(text(t("body")))
                .to_owned(),
        )
        .await?;
        // One row: the registry feed position the facts include, updated in the same
        // transaction as them.
        m.create_table(
            Table::create()
                .table(t("feed_cursor"))
                .col(integer(t("id")).primary_key())
                .col(big_integer(t("last_sequence")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("policies"))
                .col(big_integer(t("version")).primary_key())
                .col(timestamp_with_time_zone(t("created_at")))
                .col(text(t("body")))
                .to_owned(),
        )
        .await?;
        // One row: the population's cut-offs, the instant and the policy version.
        m.create_table(
            Table::create()
                .table(t("population"))
                .col(integer(t("id")).primary_key())
                .col(big_integer(t("policy_version")))
                .col(timestamp_with_time_zone(t("as_of")))
                .col(text(t("body")))
                .to_owned(),
        )
        .await?;
        let mut classifications = Table::create();
        classifications
            .table(t("classifications"))
            .col(uuid(t("customer_id")).primary_key())
            .col(big_integer(t("policy_version")))
            .col(timestamp_with_time_zone(t("as_of")))
            .col(text(t("region")));
        for column in LABEL_COLUMNS {
            // "" when the inputs allow no label.
            classifications.col(string_len(t(column), 32));
        }
        classifications
            // ",LOYAL,DEMANDING,": a trait is a LIKE '%,CODE,%' away.
            .col(text(t("traits")))
            .col(big_integer(t("revenue_in_window")))
            // The whole result: explanations, observations, RFM, features.
            .col(text(t("body")));
        m.create_table(classifications.to_owned()).await?;
        m.create_table(
            Table::create()
                .table(t("label_changes"))
                .col(big_integer(t("sequence")).primary_key())
                .col(uuid(t("customer_id")))
                .col(string_len(t("dimension"), 32))
                .col(string_len(t("old_label"), 32))
                .col(string_len(t("new_label"), 32))
                .col(timestamp_with_time_zone(t("changed_at")))
                .col(big_integer(t("policy_version")))
                .to_owned(),
        )
        .await?;
        // The change feed's counter, as the registry's outbox: gap-free, in commit order.
        m.create_table(
            Table::create()
                .table(t("change_counter"))
                .col(integer(t("id")).primary_key())
                .col(big_integer(t("last_sequence")))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        for sql in [
            "INSERT INTO feed_cursor (id, last_sequence) VALUES (1, 0)",
            "INSERT INTO change_counter (id, last_sequence) VALUES (1, 0)",
            "CREATE INDEX ix_label_changes_dimension ON label_changes (dimension, changed_at, sequence)",
            "CREATE INDEX ix_label_changes_customer ON label_changes (customer_id, sequence)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        for column in LABEL_COLUMNS {
            db.execute_unprepared(&format!(
                "CREATE INDEX ix_classifications_{column} ON classifications ({column}, customer_id)"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "change_counter",
            "label_changes",
            "classifications",
            "population",
            "policies",
            "feed_cursor",
            "facts",
        ] {
            m.drop_table(Table::drop().table(t(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
