//! Queries over the classifications: filtered listings, distributions, transitions.

use super::*;
use crate::filter::{Expr as FilterExpr, Numeric};

pub(super) fn label_column(dimension: Dimension) -> Option<&'static str> {
    match dimension {
        Dimension::LifecycleStage => Some("lifecycle_stage"),
        Dimension::Activity => Some("activity"),
        Dimension::Satisfaction => Some("satisfaction"),
        Dimension::Volume => Some("volume"),
        Dimension::Influence => Some("influence"),
        Dimension::AccountTier => Some("account_tier"),
        Dimension::RfmSegment => Some("rfm_segment"),
        Dimension::Trait => None,
    }
}

/// The condition "has `code` in `dimension`".
pub(super) fn has_label(dimension: Dimension, code: &str) -> SimpleExpr {
    match label_column(dimension) {
        Some(column) => col(column).eq(code),
        // Codes are [A-Z_]: `_` is a LIKE wildcard, harmless between the commas.
        None => col("traits").like(format!("%,{code},%")),
    }
}

/// What the database can apply of a filter expression.
enum Approx {
    /// No condition.
    All,
    /// No row.
    Nobody,
    Sql(SimpleExpr),
}

impl Approx {
    fn not(self) -> Self {
        match self {
            Approx::All => Approx::Nobody,
            Approx::Nobody => Approx::All,
            Approx::Sql(c) => Approx::Sql(c.not()),
        }
    }
}

/// A condition every row `expr` accepts meets (`over`), or one only rows it accepts meet
/// (not `over`): exact for labels, region, revenue and share of sales; for a feature the
/// database does not hold, no condition (`over`) or no row. So `over` is exact for a
/// filter of columns, and otherwise narrows the rows [`crate::filter::Filter::matches`]
/// is evaluated on.
fn approx(expr: &FilterExpr, over: bool) -> Approx {
    match expr {
        FilterExpr::Not(e) => approx(e, !over).not(),
        FilterExpr::And(all) => {
            let mut parts = Vec::new();
            for e in all {
                match approx(e, over) {
                    Approx::All => {}
                    Approx::Nobody => return Approx::Nobody,
                    Approx::Sql(c) => parts.push(c),
                }
            }
            parts
                .into_iter()
                .reduce(|a, b| a.and(b))
                .map_or(Approx::All, Approx::Sql)
        }
        FilterExpr::Or(any) => {
            let mut parts = Vec::new();
            for e in any {
                match approx(e, over) {
                    Approx::All => return Approx::All,
                    Approx::Nobody => {}
                    Approx::Sql(c) => parts.push(c),
                }
            }
            parts
                .into_iter()
                .reduce(|a, b| a.or(b))
                .map_or(Approx::Nobody, Approx::Sql)
        }
        FilterExpr::Label {
            dimension,
            code,
            equal,
        } => {
            let has = has_label(*dimension, code);
            Approx::Sql(if *equal { has } else { has.not() })
        }
        FilterExpr::Region { region, equal } => {
            let value = region.as_str();
            Approx::Sql(if *equal {
                col("region").eq(value)
            } else {
                col("region").ne(value)
            })
        }
        FilterExpr::Number { field, op, value } => match number_column(*field) {
            // The value is a parsed i64, so written into the statement as it is.
            Some(column) => Approx::Sql(Expr::cust(format!("({column}) {} {value}", op.sql()))),
            None if over => Approx::All,
            None => Approx::Nobody,
        },
    }
}

/// The SQL of a numeric feature the classifications table holds, as the API shows it:
/// the share of sales as [`crate::revenue::share_bp`] computes it (a result stored before
/// the company revenue was kept counts 0 until the next refresh stamps it).
fn number_column(field: Numeric) -> Option<&'static str> {
    match field {
        Numeric::RevenueInWindow => Some("revenue_in_window"),
        Numeric::CompanyRevenueInWindow => Some("COALESCE(company_revenue, 0)"),
        Numeric::ShareOfSalesBp => Some(
            "CASE WHEN COALESCE(company_revenue, 0) <= 0 OR revenue_in_window <= 0 THEN 0 \
             WHEN revenue_in_window >= company_revenue THEN 10000 \
             ELSE revenue_in_window * 10000 / company_revenue END",
        ),
        _ => None,
    }
}

/// Up to `limit` classifications passing what the database can apply of `filter` (all
/// of it when [`Filter::is_exact`]) after customer `after`, in customer id order.
pub async fn list_classifications(
    conn: &impl ConnectionTrait,
    filter: &Filter,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Stored>, Error> {
    let mut select = Query::select()
        .columns(STORED_COLUMNS.map(t))
        .from(t("classifications"))
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    match filter.expr.as_ref().map(|e| approx(e, true)) {
        None | Some(Approx::All) => {}
        Some(Approx::Nobody) => return Ok(Vec::new()),
        Some(Approx::Sql(condition)) => {
            select.and_where(condition);
        }
    }
    if let Some(after) = after {
        select.and_where(col("customer_id").gt(after));
    }
    rows(conn, &select, decode_stored).await
}

/// One bucket of a distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Label code ("" for customers without one).
    pub label: String,
    /// Region, when split by region.
    pub region: String,
    pub customers: i64,
    /// Their revenue in the window.
    pub revenue_in_window: i64,
}

/// Customers and revenue per label of `dimension`, optionally per region.
pub async fn distribution(
    conn: &impl ConnectionTrait,
    dimension: Dimension,
    by_region: bool,
) -> Result<Vec<Bucket>, Error> {
    let labels: Vec<String> = match label_column(dimension) {
        Some(_) => vec![String::new()],
        None => dimension
            .labels()
            .iter()
            .map(|(c, _, _)| (*c).to_owned())
            .collect(),
    };
    let mut out = Vec::new();
    for trait_code in labels {
        let mut select = Query::select()
            .expr_as(Expr::cust("COUNT(*)"), t("customers"))
            .expr_as(
                Expr::cust("CAST(COALESCE(SUM(revenue_in_window), 0) AS BIGINT)"),
                t("revenue"),
            )
            .from(t("classifications"))
            .to_owned();
        if let Some(column) = label_column(dimension) {
            select
                .expr_as(col(column), t("label"))
                .group_by_col(t(column));
        } else {
            select.and_where(has_label(dimension, &trait_code));
        }
        if by_region {
            select.column(t("region")).group_by_col(t("region"));
        }
        for row in conn.query_all(&select).await? {
            let customers: i64 = row.try_get("", "customers")?;
            if customers == 0 {
                continue;
            }
            out.push(Bucket {
                label: match label_column(dimension) {
                    Some(_) => row.try_get("", "label")?,
                    None => trait_code.clone(),
                },
                region: if by_region {
                    row.try_get("", "region")?
                } else {
                    String::new()
                },
                customers,
                revenue_in_window: row.try_get("", "revenue")?,
            });
        }
    }
    Ok(out)
}

/// Up to `limit` changes matching `q` after sequence `after`, oldest first.
pub async fn transitions(
    conn: &impl ConnectionTrait,
    q: &TransitionQuery,
    after: i64,
    limit: u64,
) -> Result<Vec<LabelChange>, Error> {
    let mut select = changes_select()
        .and_where(col("dimension").eq(q.dimension.name()))
        .and_where(col("changed_at").gte(q.start))
        .and_where(col("changed_at").lt(q.end))
        .and_where(col("sequence").gt(after))
        .order_by(t("sequence"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(from) = &q.from {
        select.and_where(col("old_label").eq(from.as_str()));
    }
    if let Some(to) = &q.to {
        select.and_where(col("new_label").eq(to.as_str()));
    }
    rows(conn, &select, label_change).await
}
