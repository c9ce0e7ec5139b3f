//! What makes unchanged results cheap: a page's new results compared with the stored
//! ones in the database, customers who kept their labels written without their label
//! columns, and whole pages stamped by one statement.

use clientela_runtime::raw::{MAX_ROWS_PER_VALUES, Raw};

use super::*;

/// Writes the classifications of customers who kept their labels: their inputs, region
/// and stamp, leaving the label columns, and so their indexes, alone: one statement per
/// thousand rows binding four values each, where an upsert would bind all eighteen
/// columns (SQLite checks NOT NULL before it sees the conflict). A full Reclassify comes
/// here only for customers whose inputs or region moved; the rest of its page is stamped
/// by [`stamp_range`].
pub(super) async fn update_kept(
    conn: &impl ConnectionTrait,
    stamp: Stamp,
    records: &[&Record],
) -> Result<(), Error> {
    for chunk in records.chunks(MAX_ROWS_PER_VALUES) {
        let rows = chunk.iter().map(|r| {
            [
                r.customer.into(),
                r.region.clone().into(),
                r.revenue_in_window.into(),
                r.inputs.clone().into(),
            ]
        });
        let mut raw = Raw::new(conn.get_database_backend(), chunk.len());
        raw.with_values("customer_id, region, revenue_in_window, inputs", rows)
            .text("UPDATE classifications SET policy_version = ")
            .param(stamp.policy_version)
            .text(", population_id = ")
            .param(stamp.population_id)
            .text(", company_revenue = ")
            .param(stamp.company_revenue)
            .text(", as_of = ")
            .param(stamp.as_of)
            .text(
                ", region = v.region, revenue_in_window = v.revenue_in_window, \
                 inputs = v.inputs, body = '', data = NULL \
                 FROM v WHERE classifications.customer_id = v.customer_id",
            );
        conn.execute_raw(raw.statement()).await?;
    }
    Ok(())
}

/// A stored classification that differs from a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// What is stored (None: nothing).
    pub stored: Option<Current>,
    /// Whether the label codes differ (else only the inputs or the region do).
    pub codes: bool,
}

impl Replaced {
    /// What `new` replaces when `stored` is stored (None: nothing stored); None when
    /// they do not differ in codes, inputs or region. [`differing`] says the same in SQL.
    pub(crate) fn between(stored: Option<&StoredResult>, new: Option<&Record>) -> Option<Self> {
        let codes = stored.map(|s| &s.codes) != new.map(|r| &r.codes_text);
        let moved = codes
            || stored.and_then(|s| s.inputs.as_deref()) != new.map(|r| r.inputs.as_slice())
            || stored.map(|s| &s.region) != new.map(|r| &r.region);
        moved.then(|| Self {
            stored: stored.map(|s| Current {
                region: s.region.clone(),
                codes: s.codes.clone(),
            }),
            codes,
        })
    }
}

/// Of `candidates` (customers and their new classification, None when they have none),
/// those whose stored classification differs in its codes, inputs or region, with what
/// is stored. The comparison runs in the database, so only the customers whose results
/// moved come back: most keep theirs from one day to the next.
pub async fn differing(
    conn: &impl ConnectionTrait,
    candidates: Vec<(Uuid, Option<&Record>)>,
) -> Result<HashMap<Uuid, Replaced>, Error> {
    let backend = conn.get_database_backend();
    let distinct = match backend {
        DbBackend::Postgres => "IS DISTINCT FROM",
        _ => "IS NOT",
    };
    let mut out = HashMap::new();
    for chunk in candidates.chunks(MAX_ROWS_PER_VALUES) {
        let rows = chunk.iter().map(|(id, new)| {
            [
                (*id).into(),
                new.map(|r| r.codes_text.clone()).into(),
                new.map(|r| r.inputs.clone()).into(),
                new.map(|r| r.region.clone()).into(),
            ]
        });
        let mut raw = Raw::new(backend, chunk.len());
        raw.with_values("customer_id, codes, inputs, region", rows)
            .text(
                "SELECT v.customer_id AS customer_id, c.region AS region, c.codes AS codes, \
                 CASE WHEN c.codes ",
            )
            .text(distinct)
            .text(
                " v.codes THEN 1 ELSE 0 END AS codes_differ \
                 FROM v LEFT JOIN classifications c ON c.customer_id = v.customer_id \
                 WHERE c.codes ",
            )
            .text(distinct)
            .text(" v.codes OR c.inputs ")
            .text(distinct)
            .text(" v.inputs OR c.region ")
            .text(distinct)
            .text(" v.region");
        for row in conn.query_all_raw(raw.statement()).await? {
            let region: Option<String> = row.try_get("", "region")?;
            let codes: Option<String> = row.try_get("", "codes")?;
            let differ: i32 = row.try_get("", "codes_differ")?;
            let replaced = Replaced {
                stored: region
                    .zip(codes)
                    .map(|(region, codes)| Current { region, codes }),
                codes: differ != 0,
            };
            out.insert(row.try_get("", "customer_id")?, replaced);
        }
    }
    Ok(out)
}

/// Stamps every classification of the customers after `after` up to `last` with
/// `stamp`: a page of a full Reclassify whose results did not move keeps them, under the
/// run that confirmed them, for the cost of one statement.
pub async fn stamp_range(
    conn: &impl ConnectionTrait,
    stamp: Stamp,
    after: Option<Uuid>,
    last: Uuid,
) -> Result<(), Error> {
    let mut update = Query::update();
    update
        .table(t("classifications"))
        .values([
            (t("policy_version"), stamp.policy_version.into()),
            (t("population_id"), stamp.population_id.into()),
            (t("company_revenue"), stamp.company_revenue.into()),
            (t("as_of"), stamp.as_of.into()),
        ])
        .and_where(col("customer_id").lte(last));
    if let Some(after) = after {
        update.and_where(col("customer_id").gt(after));
    }
    conn.execute(&update).await?;
    Ok(())
}
