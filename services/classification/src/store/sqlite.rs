//! The fast paths that exist for SQLite only, fenced here. sqlx runs each SQLite
//! connection on a thread of its own and hands every statement and row across a channel;
//! for a point read or a scan of a file that hand-off costs more than SQLite's own work
//! (docs/BENCHMARKS.md). These read through the read-only rusqlite connections of
//! `Db::sqlite_read` on the calling thread: a Reclassify's page read ahead (facts, stored
//! results and counters in one snapshot) and GetClassification's point read. PostgreSQL,
//! and SQLite in memory, read through the pool with the portable statements instead.

use super::*;

/// [`facts_page`] read from a SQLite file on the calling thread (see
/// [`clientela_runtime::Db::sqlite_read`]), each record decoded where SQLite holds it.
pub(crate) fn sqlite_facts_page(
    conn: &rusqlite::Connection,
    after: Option<Uuid>,
    limit: u64,
) -> rusqlite::Result<Result<Vec<CustomerFacts>, Error>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement;
    let mut rows = match after {
        Some(after) => {
            statement = conn.prepare_cached(
                "SELECT data FROM facts WHERE customer_id > ?2 ORDER BY customer_id LIMIT ?1",
            )?;
            statement.query(rusqlite::params![limit, after.as_bytes().as_slice()])?
        }
        None => {
            statement =
                conn.prepare_cached("SELECT data FROM facts ORDER BY customer_id LIMIT ?1")?;
            statement.query([limit])?
        }
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        match decode_facts(row.get_ref(0)?.as_blob()?) {
            Ok(facts) => out.push(facts),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(out))
}

/// A page of customers read from a SQLite file in one snapshot: their facts, what is
/// stored for them, and the counters that tell later whether either has moved since.
pub(crate) struct SqlitePage {
    /// The feed cursor.
    pub cursor: i64,
    /// The company revenue in the window asked for.
    pub company_revenue: i64,
    /// [`classification_writes`].
    pub writes: i64,
    /// The facts, in id order.
    pub facts: Vec<CustomerFacts>,
    /// The stored results of the page's customers.
    pub stored: HashMap<Uuid, StoredResult>,
}

/// The parts of a stored result a new one is compared with.
#[derive(Debug)]
pub(crate) struct StoredResult {
    pub(super) region: String,
    pub(super) codes: String,
    pub(super) inputs: Option<Vec<u8>>,
}

/// Up to `limit` customers after `after` read from a SQLite file (see [`SqlitePage`]);
/// `known` is the company revenue in the window read at a feed cursor, taken as it is
/// when the cursor has not moved.
pub(crate) fn sqlite_page(
    conn: &rusqlite::Connection,
    after: Option<Uuid>,
    limit: u64,
    (currency, (first, last)): (String, (i64, i64)),
    known: Option<(i64, i64)>,
) -> rusqlite::Result<Result<SqlitePage, Error>> {
    let snapshot = conn.unchecked_transaction()?;
    let count = |table: &str| {
        snapshot.query_row(
            &format!("SELECT last_sequence FROM {table} WHERE id = 1"),
            [],
            |row| row.get(0),
        )
    };
    let (cursor, writes) = (count("feed_cursor")?, count("write_counter")?);
    let company_revenue = match known {
        Some((at, revenue)) if at == cursor => revenue,
        _ => snapshot
            .prepare_cached(
                "SELECT COALESCE(SUM(amount_minor), 0) FROM company_revenue \
                 WHERE currency_code = ?1 AND hour >= ?2 AND hour <= ?3",
            )?
            .query_row(rusqlite::params![currency, first, last], |row| row.get(0))?,
    };
    let facts = match sqlite_facts_page(&snapshot, after, limit)? {
        Ok(facts) => facts,
        Err(e) => return Ok(Err(e)),
    };
    let mut stored = HashMap::with_capacity(facts.len());
    if let Some(last) = facts.last() {
        let mut statement = snapshot.prepare_cached(
            "SELECT customer_id, region, codes, inputs FROM classifications \
             WHERE customer_id > ?1 AND customer_id <= ?2",
        )?;
        let first: &[u8] = after.as_ref().map_or(&[], |a| a.as_bytes());
        let mut rows = statement.query(rusqlite::params![first, last.id.as_bytes().as_slice()])?;
        while let Some(row) = rows.next()? {
            let id: [u8; 16] = row.get(0)?;
            let result = StoredResult {
                region: row.get(1)?,
                codes: row.get(2)?,
                inputs: row.get(3)?,
            };
            stored.insert(Uuid::from_bytes(id), result);
        }
    }
    Ok(Ok(SqlitePage {
        cursor,
        company_revenue,
        writes,
        facts,
        stored,
    }))
}

/// The current classification of `id` read from a SQLite file on the calling thread
/// (see [`clientela_runtime::Db::sqlite_read`]); `Ok(None)` when it has none.
pub(crate) fn sqlite_classification(
    conn: &rusqlite::Connection,
    id: Uuid,
) -> rusqlite::Result<Option<StoredRow>> {
    use rusqlite::OptionalExtension as _;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {} FROM classifications WHERE customer_id = ?1",
            STORED_COLUMNS.join(", ")
        )
    });
    conn.prepare_cached(&SQL)?
        .query_row([id.as_bytes().as_slice()], StoredRow::read_sqlite)
        .optional()
}

impl StoredRow {
    /// The same from a SQLite row read directly (see [`sqlite_classification`]), whose
    /// columns hold what sqlx wrote: the id as 16 bytes, the instant as RFC 3339 text.
    fn read_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let invalid = |column: usize, e: String| {
            rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
        };
        let id: [u8; 16] = row.get(0)?;
        let as_of: String = row.get(3)?;
        let as_of = DateTime::parse_from_rfc3339(&as_of)
            .map_err(|e| invalid(3, format!("as_of {as_of:?}: {e}")))?
            .with_timezone(&Utc);
        Ok(Self {
            customer: Uuid::from_bytes(id),
            policy_version: row.get(1)?,
            population_id: row.get(2)?,
            as_of,
            region: row.get(4)?,
            inputs: row.get(5)?,
            data: row.get(6)?,
            body: row.get(7)?,
            company_revenue: row.get(8)?,
        })
    }
}

/// Runs `read` on a SQLite file's read-only connection on a blocking thread; None when
/// the database has none (PostgreSQL, SQLite in memory). A scan read so, decoding each
/// row where SQLite holds it, skips sqlx's hand-off of every row to the calling task,
/// which was most of a full scan's cost (docs/BENCHMARKS.md).
async fn on_blocking_thread<T: Send + 'static>(
    db: &Db,
    read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<Result<T, Error>> + Send + 'static,
) -> Option<Result<T, Error>> {
    if !db.has_sqlite_reads() {
        return None;
    }
    let db = db.clone();
    let outcome = match tokio::task::spawn_blocking(move || db.sqlite_read(read)).await {
        Ok(Some(Ok(read))) => read,
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err(Error::Internal("the database has no SQLite reads".into())),
        Err(e) => Err(Error::Internal(format!("a blocking read: {e}"))),
    };
    Some(outcome)
}

/// Up to `limit` customers' facts after `after`, in id order: on a blocking thread from
/// a SQLite file, else through the pool.
pub async fn read_facts_page(
    db: &Db,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<CustomerFacts>, Error> {
    match on_blocking_thread(db, move |conn| sqlite_facts_page(conn, after, limit)).await {
        Some(page) => page,
        None => facts_page(db.conn(), after, limit).await,
    }
}

/// A page with its stored results and counters in one snapshot ([`SqlitePage`]), from a
/// SQLite file; None elsewhere (the caller reads the parts through the pool).
pub(crate) async fn read_page_with_results(
    db: &Db,
    after: Option<Uuid>,
    limit: u64,
    revenue_window: (String, (i64, i64)),
    known: Option<(i64, i64)>,
) -> Option<Result<SqlitePage, Error>> {
    on_blocking_thread(db, move |conn| {
        sqlite_page(conn, after, limit, revenue_window, known)
    })
    .await
}

/// The current classification of `customer`, if any: read on the calling thread from a
/// SQLite file (a point read answered from SQLite's cache in microseconds), else through
/// the pool.
pub async fn read_classification(db: &Db, customer: Uuid) -> Result<Option<Stored>, Error> {
    match db.sqlite_read(|conn| sqlite_classification(conn, customer)) {
        Some(read) => read?.map(StoredRow::decode).transpose(),
        None => Ok(load_classifications(db.conn(), &[customer]).await?.pop()),
    }
}
