//! The company revenue ledger (see [`crate::revenue`] and the migration that made it).

use super::*;
use crate::revenue::{RevenueDelta, window_hours};

/// Adds `delta` to the ledger, in the transaction that changed the facts.
pub async fn add_company_revenue(
    conn: &impl ConnectionTrait,
    delta: RevenueDelta,
) -> Result<(), Error> {
    let rows = delta.into_rows();
    for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert
            .into_table(t("company_revenue"))
            .columns([t("currency_code"), t("hour"), t("amount_minor")])
            .on_conflict(
                OnConflict::columns([t("currency_code"), t("hour")])
                    .value(
                        t("amount_minor"),
                        Expr::col((t("company_revenue"), t("amount_minor")))
                            .add(Expr::cust("excluded.amount_minor")),
                    )
                    .to_owned(),
            );
        for (currency, hour, amount) in chunk {
            insert
                .values([currency.clone().into(), (*hour).into(), (*amount).into()])
                .map_err(sql_error)?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// The company's net revenue in `policy`'s window at `as_of`, in its currency.
pub async fn company_revenue(
    conn: &impl ConnectionTrait,
    policy: &Policy,
    as_of: DateTime<Utc>,
) -> Result<i64, Error> {
    let (first, last) = window_hours(policy, as_of);
    let select = Query::select()
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT)"),
            t("revenue"),
        )
        .from(t("company_revenue"))
        .and_where(col("currency_code").eq(policy.currency_code.as_str()))
        .and_where(col("hour").gte(first))
        .and_where(col("hour").lte(last))
        .to_owned();
    let row = conn
        .query_one(&select)
        .await?
        .ok_or_else(|| Error::Internal("a sum returned no row".into()))?;
    Ok(row.try_get("", "revenue")?)
}

/// Whether the ledger holds every fact (false: an upgraded engine that has not filled
/// it yet).
pub async fn company_revenue_complete(conn: &impl ConnectionTrait) -> Result<bool, Error> {
    let select = Query::select()
        .column(t("complete"))
        .from(t("company_revenue_ledger"))
        .and_where(col("id").eq(1))
        .to_owned();
    let row = conn
        .query_one(&select)
        .await?
        .ok_or_else(|| Error::Internal("the company revenue ledger row is missing".into()))?;
    Ok(row.try_get("", "complete")?)
}

/// Marks the ledger as holding every fact.
pub async fn mark_company_revenue_complete(conn: &impl ConnectionTrait) -> Result<(), Error> {
    let update = Query::update()
        .table(t("company_revenue_ledger"))
        .value(t("complete"), true)
        .and_where(col("id").eq(1))
        .to_owned();
    conn.execute(&update).await?;
    Ok(())
}
