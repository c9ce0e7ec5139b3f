//! Reads that exist for SQLite files only, fenced here: they run on the read-only
//! rusqlite connections of `Db::sqlite_read`, on the calling thread, because sqlx hands
//! every statement and row of a SQLite connection across threads, and for a point read
//! that hand-off is most of the cost (docs/BENCHMARKS.md). The statements are the
//! portable ones' equivalents; the rows go through the same decoders.

use std::collections::HashMap;
use std::sync::LazyLock;

use clientela_runtime::db::sqlite_statement;
use sea_orm::sea_query::SelectStatement;

use clientela_runtime::{Db, Error};
use rusqlite::OptionalExtension as _;
use uuid::Uuid;

use super::cartera::{
    self, ASSIGNMENT_COLUMNS, CUSTOMER_COLUMNS, Customers, Read, assignment_of, customer_of,
    last_end_of,
};
use crate::assign::Assignment;
use crate::cartera::{Customer, LastEnds, Page, PurchaseView};
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

/// [`super::cartera::page`] on a direct connection (a realignment's reads, in the
/// caller's read transaction).
pub(crate) fn page(
    conn: &rusqlite::Connection,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Page, Error> {
    let customers = rows(conn, &cartera::customer_page_select(after, limit), |r| {
        customer_of(r)
    })?;
    let Some(last) = customers.last().map(|c| c.id) else {
        return Ok(Page::default());
    };
    let range = Customers::Range { after, last };
    Ok(Page {
        open: open(conn, range, Read::ForRealignment)?,
        last_ends: last_ends(conn, range)?,
        customers,
    })
}

/// [`super::cartera::loads`] on a direct connection.
pub(crate) fn loads(conn: &rusqlite::Connection, ids: &[Uuid]) -> Result<Page, Error> {
    let mut customers = Vec::with_capacity(ids.len());
    for select in cartera::customers_selects(ids) {
        customers.extend(rows(conn, &select, |r| customer_of(r))?);
    }
    Ok(Page {
        customers,
        open: open(conn, Customers::These(ids), Read::Whole)?,
        last_ends: last_ends(conn, Customers::These(ids))?,
    })
}

/// [`super::cartera::purchase_views`] on a direct connection.
pub(crate) fn purchase_views(
    conn: &rusqlite::Connection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, PurchaseView>, Error> {
    let mut views = HashMap::with_capacity(ids.len());
    for select in cartera::views_selects(ids) {
        each_row(conn, &select, |row| cartera::add_view(&mut views, row))?;
    }
    Ok(views)
}

fn open(
    conn: &rusqlite::Connection,
    customers: Customers<'_>,
    read: Read,
) -> Result<Vec<Assignment>, Error> {
    let mut out = Vec::new();
    for select in cartera::open_selects(customers, read) {
        out.extend(rows(conn, &select, |r| assignment_of(r))?);
    }
    Ok(out)
}

fn last_ends(conn: &rusqlite::Connection, customers: Customers<'_>) -> Result<LastEnds, Error> {
    let mut out = HashMap::new();
    for select in cartera::last_ends_selects(customers) {
        each_row(conn, &select, |row| {
            let (slot, end) = last_end_of(row)?;
            out.insert(slot, end);
            Ok(())
        })?;
    }
    Ok(out)
}

/// The rows of `select`, each decoded by `decode`.
fn rows<T>(
    conn: &rusqlite::Connection,
    select: &SelectStatement,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    each_row(conn, select, |row| {
        out.push(decode(row)?);
        Ok(())
    })?;
    Ok(out)
}

/// Runs `select` (the statement the pool would run) and hands each row to `take`.
fn each_row(
    conn: &rusqlite::Connection,
    select: &SelectStatement,
    mut take: impl FnMut(&rusqlite::Row<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let failed = |e: rusqlite::Error| Error::Internal(format!("reading SQLite: {e}"));
    let (sql, values) = sqlite_statement(select)?;
    let mut statement = conn.prepare_cached(&sql).map_err(failed)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(values))
        .map_err(failed)?;
    while let Some(row) = rows.next().map_err(failed)? {
        take(row)?;
    }
    Ok(())
}

/// Runs `read` on a direct connection to a SQLite file, on a blocking thread; None for
/// other databases. Inside a write transaction only before its first write: the
/// transaction holds the write gate, so the last commit is what it would read.
pub(crate) async fn on_direct<T: Send + 'static>(
    db: &Db,
    read: impl FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static,
) -> Option<Result<T, Error>> {
    if !db.has_sqlite_reads() {
        return None;
    }
    let db = db.clone();
    let done = tokio::task::spawn_blocking(move || db.sqlite_read(|conn| Ok(read(conn))))
        .await
        .map_err(|e| Error::Internal(format!("a direct read failed: {e}")));
    Some(match done {
        Ok(Some(Ok(read))) => read,
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err(Error::Internal("no direct reads".into())),
        Err(e) => Err(e),
    })
}
