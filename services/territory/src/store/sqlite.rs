//! Reads that exist for SQLite files only, fenced here: they run on the read-only
//! rusqlite connections of `Db::sqlite_read`, on the calling thread, because sqlx hands
//! every statement and row of a SQLite connection across threads, and for a point read
//! that hand-off is most of the cost (docs/BENCHMARKS.md). The statements are the
//! portable ones' equivalents; the rows go through the same decoders.

use std::sync::LazyLock;

use clientela_runtime::Error;
use rusqlite::OptionalExtension as _;
use uuid::Uuid;

use super::cartera::{
    ASSIGNMENT_COLUMNS, CUSTOMER_COLUMNS, assignment_of, customer_of, last_end_of, page_sql,
};
use crate::assign::Assignment;
use crate::cartera::{Customer, Page};
use crate::model::ModelState;

/// What GetCoverage reads of one customer, in one snapshot.
#[derive(Debug)]
pub(crate) struct CoverageRows {
    pub customer: Option<Customer>,
    /// Every interval of the customer, by start.
    pub assignments: Vec<Assignment>,
    /// The active model's (id, version).
    pub active: Option<(Uuid, i64)>,
}

/// [`CoverageRows`] of customer `id`.
pub(crate) fn coverage_rows(
    conn: &rusqlite::Connection,
    id: Uuid,
) -> rusqlite::Result<Result<CoverageRows, Error>> {
    static CUSTOMER: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM cartera_customers WHERE id = ?1",
            CUSTOMER_COLUMNS.join(", ")
        )
    });
    static HISTORY: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM assignments WHERE customer_id = ?1 ORDER BY valid_from, sequence",
            ASSIGNMENT_COLUMNS.join(", ")
        )
    });
    let key = id.as_bytes().as_slice();
    // One read transaction: the three statements see the same commit.
    let tx = conn.unchecked_transaction()?;
    let customer = tx
        .prepare_cached(&CUSTOMER)?
        .query_row([key], |row| Ok(customer_of(row)))
        .optional()?
        .transpose();
    let mut assignments = Vec::new();
    let mut statement = tx.prepare_cached(&HISTORY)?;
    let mut rows = statement.query([key])?;
    while let Some(row) = rows.next()? {
        match assignment_of(row) {
            Ok(a) => assignments.push(a),
            Err(e) => return Ok(Err(e)),
        }
    }
    drop(rows);
    drop(statement);
    let active = tx
        .prepare_cached("SELECT id, version FROM territory_models WHERE state = ?1 LIMIT 1")?
        .query_row([ModelState::Active.as_str()], |row| {
            Ok((row.get::<_, Uuid>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    Ok(customer.map(|customer| CoverageRows {
        customer,
        assignments,
        active,
    }))
}

/// [`super::cartera::page`] on a direct connection: the page of up to `limit` customers
/// after `after`, with their open assignments and last ends (a realignment's reads, in
/// the caller's read transaction).
pub(crate) fn page(
    conn: &rusqlite::Connection,
    after: Option<Uuid>,
    limit: u64,
) -> rusqlite::Result<Result<Page, Error>> {
    static SQL: LazyLock<[String; 3]> = LazyLock::new(page_sql);
    let after_key: &[u8] = after.as_ref().map_or(&[], |a| a.as_bytes().as_slice());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let customers = collect(conn, &SQL[0], (after_key, limit), |r| customer_of(r))?;
    let customers = match customers {
        Ok(customers) => customers,
        Err(e) => return Ok(Err(e)),
    };
    let Some(last) = customers.last().map(|c| c.id) else {
        return Ok(Ok(Page::default()));
    };
    let range = (after_key, last.as_bytes().as_slice());
    let open = collect(conn, &SQL[1], range, |r| assignment_of(r))?;
    let ends = collect(conn, &SQL[2], range, |r| last_end_of(r))?;
    Ok(open.and_then(|open| {
        Ok(Page {
            customers,
            open,
            last_ends: ends?.into_iter().collect(),
        })
    }))
}

/// The rows of `sql` with `params`, each decoded by `decode`.
fn collect<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, Error>,
) -> rusqlite::Result<Result<Vec<T>, Error>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        match decode(row) {
            Ok(item) => out.push(item),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(out))
}
