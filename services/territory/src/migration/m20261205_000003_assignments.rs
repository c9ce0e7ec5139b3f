//! The customers as the registry's feed describes them, their assignments (append-only
//! intervals), the sellers' loads, and the feed of assignment changes.

use clientela_runtime::feed::create_sequence_table;
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
        m.create_table(
            Table::create()
                .table(t("cartera_customers"))
                .col(uuid(t("id")).primary_key())
                // PROSPECT, CUSTOMER, ARCHIVED or MERGED, as the registry last said.
                .col(string_len(t("standing"), 16))
                .col(uuid_null(t("merged_into")))
                // The address as criteria compare it (locate::Place).
                .col(string_len(t("country_code"), 8))
                .col(text(t("region")))
                .col(text(t("locality")))
                .col(text(t("postal_code")))
                // Where the active model placed it (None: unassigned, with the reason).
                .col(string_len_null(t("territory_code"), 64))
                .col(text_null(t("unassigned_reason")))
                // Its earliest purchase: a PRIMARY is due from then on.
                .col(timestamp_with_time_zone_null(t("first_purchase_at")))
                .col(timestamp_with_time_zone(t("profile_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("assignments"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("customer_id")))
                .col(uuid(t("seller_id")))
                // PRIMARY, SPECIALIST, KAM or PROSPECTOR.
                .col(string_len(t("role"), 16))
                // The product line of a SPECIALIST ("" for the other roles).
                .col(text(t("product_line")))
                // [valid_from, valid_to): closed once, never reopened or deleted.
                .col(timestamp_with_time_zone(t("valid_from")))
                .col(timestamp_with_time_zone_null(t("valid_to")))
                // RULE, MANUAL, HANDOVER, OVERFLOW, MERGE or TIER_CHANGE.
                .col(string_len(t("cause"), 16))
                .col(uuid_null(t("model_id")))
                .col(big_integer_null(t("model_version")))
                .col(string_len_null(t("territory_code"), 64))
                // Who made a manual assignment or pin, and why.
                .col(text_null(t("actor")))
                .col(text_null(t("reason")))
                .col(boolean(t("pinned")))
                .col(timestamp_with_time_zone_null(t("pin_expires_at")))
                .col(big_integer(t("weight")))
                // Why the interval closed.
                .col(string_len_null(t("end_cause"), 16))
                // What the choice considered (JSON: candidates, loads, tie-break).
                .col(text(t("explanation")))
                // The order assignments were made in.
                .col(big_integer(t("sequence")))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(t("sellers"))
                // The weight of its open assignments.
                .add_column(big_integer(t("load")).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(t("sellers"))
                // The sequence of its last automatic assignment: ties go to the one
                // chosen longest ago (round robin that survives restarts).
                .add_column(big_integer(t("last_chosen")).default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("assignment_changes"))
                .col(big_integer(t("sequence")).primary_key())
                .col(uuid(t("assignment_id")))
                // OPENED or CLOSED.
                .col(string_len(t("change"), 8))
                .col(uuid(t("customer_id")))
                .col(uuid(t("seller_id")))
                .col(string_len(t("role"), 16))
                .col(text(t("product_line")))
                .col(timestamp_with_time_zone(t("at")))
                // The assignment's cause (OPENED) or end cause (CLOSED).
                .col(string_len(t("cause"), 16))
                .to_owned(),
        )
        .await?;
        create_sequence_table(m, "assignment_change_counter").await?;
        create_sequence_table(m, "registry_cursor").await?;
        let db = m.get_connection();
        for sql in [
            // One open assignment per (customer, role, line): invariants 1 to 3 held by
            // the database too.
            "CREATE UNIQUE INDEX ux_assignments_open ON assignments (customer_id, role, product_line) \
             WHERE valid_to IS NULL",
            "CREATE INDEX ix_assignments_customer ON assignments (customer_id, valid_from)",
            "CREATE INDEX ix_assignments_seller ON assignments (seller_id, valid_from)",
            "CREATE INDEX ix_cartera_customers_territory ON cartera_customers (territory_code, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "registry_cursor",
            "assignment_change_counter",
            "assignment_changes",
            "assignments",
            "cartera_customers",
        ] {
            m.drop_table(Table::drop().table(t(table)).to_owned())
                .await?;
        }
        for column in ["last_chosen", "load"] {
            m.alter_table(
                Table::alter()
                    .table(t("sellers"))
                    .drop_column(t(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
