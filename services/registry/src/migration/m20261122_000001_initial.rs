//! Customers, their commercial history, the lookup keys for duplicates and filters, and
//! the event feed with its sequence counter.

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
                .table(t("customers"))
                .col(uuid(t("id")).primary_key())
                .col(string_len(t("kind"), 16))
                .col(text(t("display_name")))
                .col(text(t("legal_name")))
                .col(string_len_null(t("tax_country"), 2))
                .col(text_null(t("tax_id")))
                // "CL:123456785": country plus uppercase alphanumerics.
                .col(text_null(t("tax_key")))
                .col(text(t("emails")))
                .col(text(t("phones")))
                .col(text_null(t("address")))
                // Folded region, for the region filter.
                .col(text_null(t("region_key")))
                .col(string_len_null(t("channel_role"), 32))
                .col(string_len_null(t("business_kind"), 8))
                .col(text(t("influence")))
                .col(text(t("tags")))
                .col(text(t("attributes")))
                .col(text(t("consent")))
                .col(string_len(t("language_code"), 8))
                .col(text_null(t("external_id")))
                .col(string_len(t("status"), 16))
                .col(uuid_null(t("merged_into")))
                // Folded names, emails and tax id, for text search.
                .col(text(t("search_text")))
                .col(text_null(t("request_id")))
                .col(big_integer(t("version")))
                .col(timestamp_with_time_zone(t("created_at")))
                .col(timestamp_with_time_zone(t("updated_at")))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("customer_keys"))
                .col(string_len(t("kind"), 8))
                .col(text(t("value")))
                .col(uuid(t("customer_id")))
                .primary_key(
                    Index::create()
                        .col(t("kind"))
                        .col(t("value"))
                        .col(t("customer_id")),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(t("customer_keys"), t("customer_id"))
                        .to(t("customers"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("purchases"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("customer_id")))
                .col(text(t("order_id")).unique_key())
                .col(timestamp_with_time_zone(t("occurred_at")))
                .col(string_len_null(t("channel"), 16))
                .col(string_len(t("currency_code"), 3))
                .col(big_integer(t("total_minor")))
                .col(big_integer(t("returned_minor")))
                .col(text(t("lines")))
                .col(timestamp_with_time_zone(t("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("purchases"), t("customer_id"))
                        .to(t("customers"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("returns"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("customer_id")))
                .col(uuid(t("purchase_id")))
                .col(text(t("return_id")).unique_key())
                .col(timestamp_with_time_zone(t("occurred_at")))
                .col(string_len(t("currency_code"), 3))
                .col(big_integer(t("amount_minor")))
                .col(text(t("lines")))
                .col(text(t("reason")))
                .col(timestamp_with_time_zone(t("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("returns"), t("customer_id"))
                        .to(t("customers"), t("id")),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(t("returns"), t("purchase_id"))
                        .to(t("purchases"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("surveys"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("customer_id")))
                .col(string_len(t("kind"), 8))
                .col(integer(t("score")))
                .col(timestamp_with_time_zone(t("occurred_at")))
                .col(text(t("comment")))
                .col(text_null(t("request_id")).unique_key())
                .col(timestamp_with_time_zone(t("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("surveys"), t("customer_id"))
                        .to(t("customers"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("complaints"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("customer_id")))
                .col(text(t("subject")))
                .col(text(t("description")))
                .col(boolean(t("resolved")))
                .col(timestamp_with_time_zone(t("opened_at")))
                .col(timestamp_with_time_zone_null(t("resolved_at")))
                .col(text(t("resolution")))
                .col(text_null(t("request_id")).unique_key())
                .col(big_integer(t("version")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("complaints"), t("customer_id"))
                        .to(t("customers"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("referrals"))
                .col(uuid(t("id")).primary_key())
                .col(uuid(t("referrer_id")))
                .col(uuid(t("referred_id")).unique_key())
                .col(timestamp_with_time_zone(t("occurred_at")))
                .col(timestamp_with_time_zone(t("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .from(t("referrals"), t("referrer_id"))
                        .to(t("customers"), t("id")),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(t("referrals"), t("referred_id"))
                        .to(t("customers"), t("id")),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("events"))
                .col(big_integer(t("sequence")).primary_key())
                .col(uuid(t("event_id")).unique_key())
                .col(uuid(t("customer_id")))
                .col(string_len(t("kind"), 32))
                .col(timestamp_with_time_zone(t("recorded_at")))
                .col(text(t("payload")))
                .to_owned(),
        )
        .await?;

        // One row: the last sequence number handed out. Taking the next number is an
        // UPDATE of this row, which holds its lock until commit, so numbers are gap-free
        // and commit in order: a reader never sees N+1 before N.
        m.create_table(
            Table::create()
                .table(t("feed_counter"))
                .col(integer(t("id")).primary_key())
                .col(big_integer(t("last_sequence")))
                .to_owned(),
        )
        .await?;

        let db = m.get_connection();
        for sql in [
            "INSERT INTO feed_counter (id, last_sequence) VALUES (1, 0)",
            // Unique keys hold among live customers only: archived and merged ones do not
            // block a new customer (partial unique indexes, the same SQL on both engines).
            "CREATE UNIQUE INDEX ux_customers_tax_key_live ON customers (tax_key) \
             WHERE status IN ('PROSPECT', 'CUSTOMER') AND tax_key IS NOT NULL",
            "CREATE UNIQUE INDEX ux_customers_external_id_live ON customers (external_id) \
             WHERE status IN ('PROSPECT', 'CUSTOMER') AND external_id IS NOT NULL",
            "CREATE UNIQUE INDEX ux_customers_request_id ON customers (request_id) WHERE request_id IS NOT NULL",
            "CREATE INDEX ix_customers_status_created ON customers (status, created_at, id)",
            "CREATE INDEX ix_customers_region ON customers (region_key)",
            "CREATE INDEX ix_customer_keys_customer ON customer_keys (customer_id)",
            "CREATE INDEX ix_purchases_customer ON purchases (customer_id, occurred_at, id)",
            "CREATE INDEX ix_purchases_occurred ON purchases (occurred_at, id)",
            "CREATE INDEX ix_returns_customer ON returns (customer_id, occurred_at, id)",
            "CREATE INDEX ix_surveys_customer ON surveys (customer_id, occurred_at, id)",
            "CREATE INDEX ix_complaints_customer ON complaints (customer_id, opened_at, id)",
            "CREATE INDEX ix_referrals_referrer ON referrals (referrer_id, occurred_at, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "feed_counter",
            "events",
            "referrals",
            "complaints",
            "surveys",
            "returns",
            "purchases",
            "customer_keys",
            "customers",
        ] {
            m.drop_table(Table::drop().table(t(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
