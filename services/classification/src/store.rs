//! The engine's storage: statements built with sea-query, so the same code runs on
//! SQLite and PostgreSQL. Functions take any connection or transaction; no proto type
//! reaches here. Documents (results, policies) are JSON columns; facts are binary.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use clientela_runtime::feed::outbox::{add_to_sequence, read_sequence};
use clientela_runtime::feed::{Outbox, OutboxRecord};
use clientela_runtime::{Db, Error, WriteTx};
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, SimpleExpr,
};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::classification::{Classification, Codes, Inputs};
use crate::facts::CustomerFacts;
use crate::filter::Filter;
use crate::labels::Dimension;
use crate::policy::Policy;
use crate::population::Population;

/// Values in one `IN (...)` list (well inside both engines' parameter limits).
const MAX_IN_LIST: usize = 1_000;
/// Rows in one multi-row INSERT.
const MAX_ROWS_PER_INSERT: usize = 500;

/// The label columns of `classifications`, one per single-label dimension, in the order
/// of [`crate::labels::Labels::codes`]. (The migration keeps its own copy: a migration
/// is a snapshot of the schema at its time.)
const LABEL_COLUMNS: [&str; 7] = [
    "lifecycle_stage",
    "activity",
    "satisfaction",
    "volume",
    "influence",
    "account_tier",
    "rfm_segment",
];

fn t(name: &str) -> Alias {
    Alias::new(name)
}

fn col(name: &str) -> Expr {
    Expr::col(t(name))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("encoding a document: {e}")))
}

fn from_json<T: DeserializeOwned>(row: &QueryResult, column: &str) -> Result<T, Error> {
    let text: String = row.try_get("", column)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("corrupt {column} in the database: {e}")))
}

fn sql_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("building a statement: {e}"))
}

/// The rows of `select`, each decoded by `decode`.
async fn rows<T>(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
    decode: impl Fn(&QueryResult) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    conn.query_all(select).await?.iter().map(decode).collect()
}

async fn bodies<T: DeserializeOwned>(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<T>, Error> {
    rows(conn, select, |row| from_json(row, "body")).await
}

// ---- facts ----

/// The first byte of a stored facts record: the encoding that follows (postcard, with
/// timestamps in microseconds). A new layout gets a new number; the engine then rebuilds
/// the facts from the feed.
const FACTS_FORMAT: u8 = 1;

/// A record in a compact binary form: `format`, then the value in postcard.
fn encode_binary<T: Serialize>(format: u8, value: &T, what: &str) -> Result<Vec<u8>, Error> {
    postcard::to_extend(value, vec![format])
        .map_err(|e| Error::Internal(format!("encoding {what}: {e}")))
}

/// A record [`encode_binary`] wrote with `format`.
fn decode_binary<T: DeserializeOwned>(format: u8, data: &[u8], what: &str) -> Result<T, Error> {
    match data.split_first() {
        Some((f, rest)) if *f == format => postcard::from_bytes(rest)
            .map_err(|e| Error::Internal(format!("corrupt {what} in the database: {e}"))),
        _ => Err(Error::Internal(format!(
            "{what} in the database in an unknown format"
        ))),
    }
}

/// A customer's facts as stored: about a quarter of their JSON, and much cheaper to
/// write and read, since every event rewrites its customer's record.
fn encode_facts(facts: &CustomerFacts) -> Result<Vec<u8>, Error> {
    encode_binary(FACTS_FORMAT, facts, "facts")
}

fn decode_facts(data: &[u8]) -> Result<CustomerFacts, Error> {
    decode_binary(FACTS_FORMAT, data, "facts")
}

async fn facts_of(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<CustomerFacts>, Error> {
    rows(conn, select, |row| {
        decode_facts(&row.try_get::<Vec<u8>>("", "data")?)
    })
    .await
}

/// The facts of `ids` the engine has (unknown ids are left out).
pub async fn load_facts(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<CustomerFacts>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let select = Query::select()
            .column(t("data"))
            .from(t("facts"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        out.extend(facts_of(conn, &select).await?);
    }
    Ok(out)
}

/// Up to `limit` customers' facts after `after`, in id order.
pub async fn facts_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<CustomerFacts>, Error> {
    let mut select = Query::select()
        .column(t("data"))
        .from(t("facts"))
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(after) = after {
        select.and_where(col("customer_id").gt(after));
    }
    facts_of(conn, &select).await
}

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
    region: String,
    codes: String,
    inputs: Option<Vec<u8>>,
}

/// Up to `limit` customers after `after` read from a SQLite file (see [`SqlitePage`]).
pub(crate) fn sqlite_page(
    conn: &rusqlite::Connection,
    after: Option<Uuid>,
    limit: u64,
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
        writes,
        facts,
        stored,
    }))
}

/// Writes `facts`, replacing what was stored.
pub async fn save_facts<'a>(
    conn: &impl ConnectionTrait,
    facts: impl IntoIterator<Item = &'a CustomerFacts>,
) -> Result<(), Error> {
    let rows = facts
        .into_iter()
        .map(|f| Ok([f.id.into(), encode_facts(f)?.into()]))
        .collect::<Result<Vec<[SimpleExpr; 2]>, Error>>()?;
    upsert(conn, "facts", &["customer_id", "data"], rows, &["data"]).await
}

/// Multi-row `INSERT ... ON CONFLICT (first column) DO UPDATE SET update`.
async fn upsert<const N: usize>(
    conn: &impl ConnectionTrait,
    table: &str,
    columns: &[&str; N],
    rows: Vec<[SimpleExpr; N]>,
    update: &[&str],
) -> Result<(), Error> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(t(table))
            .columns(columns.iter().map(|c| t(c)))
            .on_conflict(
                OnConflict::column(t(columns[0]))
                    .update_columns(update.iter().map(|c| t(c)))
                    .to_owned(),
            );
        for row in rows.by_ref().take(MAX_ROWS_PER_INSERT) {
            insert.values(row).map_err(sql_error)?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

// ---- customers to classify ----

/// Marks `ids` as changed since they were last classified.
pub async fn mark_pending(
    conn: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<(), Error> {
    let mut ids = ids.into_iter().peekable();
    while ids.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(t("pending"))
            .columns([t("customer_id")])
            .on_conflict(OnConflict::column(t("customer_id")).do_nothing().to_owned());
        for id in ids.by_ref().take(MAX_ROWS_PER_INSERT) {
            insert.values([id.into()]).map_err(sql_error)?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Up to `limit` customers waiting to be classified, in id order.
pub async fn pending(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<Uuid>, Error> {
    let select = Query::select()
        .column(t("customer_id"))
        .from(t("pending"))
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    rows(conn, &select, |row| Ok(row.try_get("", "customer_id")?)).await
}

/// Unmarks the customers after `after` up to `last` (all of them classified).
pub async fn clear_pending(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    last: Uuid,
) -> Result<(), Error> {
    let mut delete = Query::delete()
        .from_table(t("pending"))
        .and_where(col("customer_id").lte(last))
        .to_owned();
    if let Some(after) = after {
        delete.and_where(col("customer_id").gt(after));
    }
    conn.execute(&delete).await?;
    Ok(())
}

// ---- the feed cursor ----

/// The last registry sequence the facts include.
pub async fn feed_cursor(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    read_sequence(conn, crate::engine::REGISTRY_FEED.table).await
}

/// How many transactions have written classifications (see [`count_write`]).
pub async fn classification_writes(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    read_sequence(conn, "write_counter").await
}

/// Counts a transaction that writes classifications, in it; returns its number. A
/// page compared ahead against what was stored when the count was `n` is still compared
/// against what is stored while only the comparing run's own pages have counted since.
pub async fn count_write(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    add_to_sequence(conn, "write_counter", 1).await
}

// ---- policies ----

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// From 1.
    pub version: i64,
    /// When it was set.
    pub created_at: DateTime<Utc>,
    /// The policy.
    pub policy: Policy,
}

fn policy_version(row: &QueryResult) -> Result<PolicyVersion, Error> {
    Ok(PolicyVersion {
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        policy: from_json(row, "body")?,
    })
}

/// Version `version`, or the current one with `None`.
pub async fn policy(
    conn: &impl ConnectionTrait,
    version: Option<i64>,
) -> Result<Option<PolicyVersion>, Error> {
    let mut select = Query::select()
        .columns([t("version"), t("created_at"), t("body")])
        .from(t("policies"))
        .order_by(t("version"), Order::Desc)
        .limit(1)
        .to_owned();
    if let Some(v) = version {
        select.and_where(col("version").eq(v));
    }
    conn.query_one(&select)
        .await?
        .map(|row| policy_version(&row))
        .transpose()
}

/// The current policy version, if any.
pub async fn current_policy_version(conn: &impl ConnectionTrait) -> Result<Option<i64>, Error> {
    let select = Query::select()
        .expr_as(Expr::col(t("version")).max(), t("current"))
        .from(t("policies"))
        .to_owned();
    Ok(conn
        .query_one(&select)
        .await?
        .map(|r| r.try_get::<Option<i64>>("", "current"))
        .transpose()?
        .flatten())
}

/// Stores `policy` as the version after `current` (0: none yet); ABORTED when another
/// writer stored that version first.
pub async fn insert_policy(
    conn: &impl ConnectionTrait,
    current: i64,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<PolicyVersion, Error> {
    let version = current + 1;
    let insert = Query::insert()
        .into_table(t("policies"))
        .columns([t("version"), t("created_at"), t("body")])
        .values([version.into(), now.into(), to_json(policy)?.into()])
        .map_err(sql_error)?
        .on_conflict(OnConflict::column(t("version")).do_nothing().to_owned())
        .to_owned();
    if conn.execute(&insert).await?.rows_affected() != 1 {
        return Err(Error::Aborted {
            reason: "POLICY_VERSION_TAKEN",
            message: format!("policy version {version} was set concurrently; read it and retry"),
        });
    }
    Ok(PolicyVersion {
        version,
        created_at: now,
        policy: policy.clone(),
    })
}

// ---- population ----

/// The population's cut-offs as last computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PopulationSnapshot {
    /// Policy version.
    pub policy_version: i64,
    /// Instant.
    pub as_of: DateTime<Utc>,
    /// Cut-offs.
    pub population: Population,
}

/// The last population computed, with its id, if any.
pub async fn population(
    conn: &impl ConnectionTrait,
) -> Result<Option<(i64, PopulationSnapshot)>, Error> {
    let select = Query::select()
        // `id` is an INTEGER: 32 bits on PostgreSQL.
        .expr_as(col("id").cast_as(t("BIGINT")), t("id"))
        .column(t("body"))
        .from(t("population"))
        .order_by(t("id"), Order::Desc)
        .limit(1)
        .to_owned();
    Ok(rows(conn, &select, |row| {
        Ok((row.try_get("", "id")?, from_json(row, "body")?))
    })
    .await?
    .pop())
}

/// The population `id`, if stored.
pub async fn population_by_id(
    conn: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<PopulationSnapshot>, Error> {
    let select = Query::select()
        .column(t("body"))
        .from(t("population"))
        .and_where(col("id").eq(id))
        .to_owned();
    Ok(bodies(conn, &select).await?.pop())
}

/// Stores a population computed anew; returns its id. Populations are kept: the
/// classifications made against one are rendered with it when read.
pub async fn save_population(
    conn: &impl ConnectionTrait,
    snapshot: &PopulationSnapshot,
) -> Result<i64, Error> {
    let id = population(conn).await?.map_or(0, |(id, _)| id) + 1;
    let insert = Query::insert()
        .into_table(t("population"))
        .columns([t("id"), t("policy_version"), t("as_of"), t("body")])
        .values([
            id.into(),
            snapshot.policy_version.into(),
            snapshot.as_of.into(),
            to_json(snapshot)?.into(),
        ])
        .map_err(sql_error)?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(id)
}

// ---- classifications ----

/// The first byte of `classifications.inputs`: the encoding that follows (postcard).
const INPUTS_FORMAT: u8 = 1;

/// A classification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Its inputs: rendered with the policy version and population when read.
    Inputs {
        /// The customer.
        customer: Uuid,
        /// The policy version.
        policy_version: i64,
        /// The population (0: none).
        population_id: i64,
        /// The instant.
        as_of: DateTime<Utc>,
        /// Region.
        region: String,
        /// The inputs.
        inputs: Box<Inputs>,
    },
    /// A whole result, written before results were stored as inputs (read as it was
    /// until that customer is classified again).
    Rendered(Box<Classification>),
}

/// The columns of a stored classification ([`STORED_COLUMNS`]), as read.
pub(crate) struct StoredRow {
    customer: Uuid,
    policy_version: i64,
    population_id: Option<i64>,
    as_of: DateTime<Utc>,
    region: String,
    inputs: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
    body: String,
}

impl StoredRow {
    fn read(row: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            customer: row.try_get("", "customer_id")?,
            policy_version: row.try_get("", "policy_version")?,
            population_id: row.try_get("", "population_id")?,
            as_of: row.try_get("", "as_of")?,
            region: row.try_get("", "region")?,
            inputs: row.try_get("", "inputs")?,
            data: row.try_get("", "data")?,
            body: row.try_get("", "body")?,
        })
    }

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
        })
    }

    /// The classification the row holds.
    pub(crate) fn decode(self) -> Result<Stored, Error> {
        let corrupt = |e: &dyn std::fmt::Display| {
            Error::Internal(format!("corrupt classification in the database: {e}"))
        };
        if let Some(data) = self.inputs {
            let inputs = Box::new(decode_binary(INPUTS_FORMAT, &data, "classification")?);
            return Ok(Stored::Inputs {
                customer: self.customer,
                policy_version: self.policy_version,
                population_id: self.population_id.unwrap_or(0),
                as_of: self.as_of,
                region: self.region,
                inputs,
            });
        }
        // Before inputs: the JSON, LZ4-compressed in `data`, or plain in `body`.
        let json = match &self.data {
            Some(data) => lz4_flex::decompress_size_prepended(data).map_err(|e| corrupt(&e))?,
            None => self.body.into_bytes(),
        };
        Ok(Stored::Rendered(
            serde_json::from_slice(&json).map_err(|e| corrupt(&e))?,
        ))
    }
}

fn decode_stored(row: &QueryResult) -> Result<Stored, Error> {
    StoredRow::read(row)?.decode()
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

fn encode_inputs(inputs: &Inputs) -> Result<Vec<u8>, Error> {
    encode_binary(INPUTS_FORMAT, inputs, "a classification")
}

/// The columns a stored classification is read from.
const STORED_COLUMNS: [&str; 8] = [
    "customer_id",
    "policy_version",
    "population_id",
    "as_of",
    "region",
    "inputs",
    "data",
    "body",
];

/// The current classifications of `ids` (customers not classified are left out).
pub async fn load_classifications(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<Stored>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let select = Query::select()
            .columns(STORED_COLUMNS.map(t))
            .from(t("classifications"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        out.extend(rows(conn, &select, decode_stored).await?);
    }
    Ok(out)
}

/// The region and label codes of a stored classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Region.
    pub region: String,
    /// The codes as stored ([`write_codes`]): compared as they are with a new
    /// classification's, and read only when they differ or a filter needs them.
    pub codes: String,
}

impl Current {
    /// The stored codes.
    pub fn codes(&self) -> Result<Codes, Error> {
        read_codes(&self.codes)
    }
}

/// The region and codes of the classifications of `ids`.
pub async fn load_current(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Current>, Error> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let mut select = current_select();
        select.and_where(col("customer_id").is_in(chunk.iter().copied()));
        out.extend(current_rows(conn, &select).await?);
    }
    Ok(out)
}

fn current_select() -> SelectStatement {
    Query::select()
        .columns(["customer_id", "region", "codes"].map(t))
        .from(t("classifications"))
        .to_owned()
}

async fn current_rows(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<(Uuid, Current)>, Error> {
    rows(conn, select, |row| {
        let current = Current {
            region: row.try_get("", "region")?,
            codes: row.try_get("", "codes")?,
        };
        Ok((row.try_get("", "customer_id")?, current))
    })
    .await
}

/// `codes` as stored: the label of each of [`Codes::DIMENSIONS`], then the traits
/// between commas, separated by `|` (`L1|...|L7|,T1,T2,`).
pub fn write_codes(codes: &Codes) -> String {
    let mut out = codes.labels.join("|");
    out.push_str("|,");
    for t in &codes.traits {
        out.push_str(t);
        out.push(',');
    }
    out
}

fn read_codes(text: &str) -> Result<Codes, Error> {
    let mut parts = text.split('|');
    let labels: [&str; 7] = std::array::from_fn(|_| parts.next().unwrap_or(""));
    match (parts.next(), parts.next()) {
        (Some(traits), None) => Ok(Codes::read(
            labels,
            traits.split(',').filter(|t| !t.is_empty()),
        )),
        _ => Err(Error::Internal(format!(
            "corrupt label codes in the database: {text:?}"
        ))),
    }
}

/// A classification to store, encoded as it is stored (a Reclassify encodes a page on
/// the thread that reads it, ahead of the one that writes).
#[derive(Debug, Clone)]
pub struct Record {
    /// The customer.
    pub customer: Uuid,
    /// Region.
    pub region: String,
    /// The label codes.
    pub codes: Codes,
    /// The same, as stored ([`write_codes`]).
    pub codes_text: String,
    /// The inputs, encoded.
    pub inputs: Vec<u8>,
    /// Revenue in the window (a column, for distributions).
    pub revenue_in_window: i64,
    /// Whether the codes differ from the stored ones (or none are stored): the label
    /// columns, and so their indexes, are written only then.
    pub codes_changed: bool,
}

impl Record {
    /// The record of `customer`'s classification (labels not known to have changed).
    pub fn new(
        customer: Uuid,
        region: String,
        codes: Codes,
        inputs: &Inputs,
    ) -> Result<Self, Error> {
        Ok(Self {
            customer,
            region,
            codes_text: write_codes(&codes),
            codes,
            inputs: encode_inputs(inputs)?,
            revenue_in_window: inputs.features.revenue_in_window,
            codes_changed: false,
        })
    }
}

/// The policy version, population and instant shared by the records of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The policy version.
    pub policy_version: i64,
    /// The population (0: none).
    pub population_id: i64,
    /// The instant.
    pub as_of: DateTime<Utc>,
}

/// Writes `records`, replacing the customers' previous classifications.
pub async fn save_classifications(
    conn: &impl ConnectionTrait,
    stamp: Stamp,
    records: &[Record],
) -> Result<(), Error> {
    let mut columns = vec!["customer_id", "policy_version", "population_id", "as_of"];
    columns.extend(["region", "revenue_in_window", "body", "data", "inputs"]);
    columns.extend(LABEL_COLUMNS);
    columns.extend(["traits", "codes"]);
    let columns: [&str; 18] = columns
        .try_into()
        .map_err(|_| Error::Internal("classification columns".into()))?;
    let row = |r: &Record| -> Result<[SimpleExpr; 18], Error> {
        let [a, b, c, d, e, f, g] = r
            .codes
            .labels
            .clone()
            .map(|c| SimpleExpr::from(c.into_owned()));
        let traits: String = r
            .codes
            .traits
            .iter()
            .map(|t| format!(",{t}"))
            .collect::<String>()
            + ",";
        Ok([
            r.customer.into(),
            stamp.policy_version.into(),
            stamp.population_id.into(),
            stamp.as_of.into(),
            r.region.clone().into(),
            r.revenue_in_window.into(),
            String::new().into(),
            Option::<Vec<u8>>::None.into(),
            r.inputs.clone().into(),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            traits.into(),
            r.codes_text.clone().into(),
        ])
    };
    let (changed, same): (Vec<&Record>, Vec<&Record>) =
        records.iter().partition(|r| r.codes_changed);
    let changed = changed
        .into_iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()?;
    upsert(conn, "classifications", &columns, changed, &columns[1..]).await?;
    update_kept(conn, stamp, &same).await
}

/// Rows of one hand-written `WITH v AS (VALUES ...)` statement.
const MAX_ROWS_PER_VALUES: usize = 1_000;

/// A statement written by hand, for what sea-query cannot say (`UPDATE ... FROM`, a join
/// on a `VALUES` list): its text and its parameters, numbered as the backend wants.
struct Raw {
    backend: DbBackend,
    sql: String,
    values: Vec<sea_orm::Value>,
}

impl Raw {
    fn new(backend: DbBackend, rows: usize) -> Self {
        Self {
            backend,
            sql: String::with_capacity(40 * rows + 400),
            values: Vec::with_capacity(4 * rows + 3),
        }
    }

    fn text(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn param(&mut self, value: impl Into<sea_orm::Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                let _ = write!(self.sql, "${}", self.values.len());
            }
            _ => self.sql.push('?'),
        }
        self
    }

    /// `WITH v (columns) AS (VALUES (...), ...) `, a row of parameters per row.
    fn with_values<const N: usize>(
        &mut self,
        columns: &str,
        rows: impl IntoIterator<Item = [sea_orm::Value; N]>,
    ) -> &mut Self {
        self.text("WITH v (").text(columns).text(") AS (VALUES ");
        for (i, row) in rows.into_iter().enumerate() {
            self.text(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.into_iter().enumerate() {
                if j > 0 {
                    self.text(", ");
                }
                self.param(value);
            }
            self.text(")");
        }
        self.text(") ")
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

/// Writes the classifications of customers who kept their labels: their inputs, region
/// and stamp, leaving the label columns, and so their indexes, alone: one statement per
/// thousand rows binding four values each, where an upsert would bind all eighteen
/// columns (SQLite checks NOT NULL before it sees the conflict). A full Reclassify comes
/// here only for customers whose inputs or region moved; the rest of its page is stamped
/// by [`stamp_range`].
async fn update_kept(
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
            (t("as_of"), stamp.as_of.into()),
        ])
        .and_where(col("customer_id").lte(last));
    if let Some(after) = after {
        update.and_where(col("customer_id").gt(after));
    }
    conn.execute(&update).await?;
    Ok(())
}

/// Removes the classifications of `ids` (archived or merged customers).
pub async fn delete_classifications(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<(), Error> {
    for chunk in ids.chunks(MAX_IN_LIST) {
        let delete = Query::delete()
            .from_table(t("classifications"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        conn.execute(&delete).await?;
    }
    Ok(())
}

// ---- label changes ----

/// The columns of `label_changes`, in the order rows are written.
const CHANGE_COLUMNS: [&str; 7] = [
    "sequence",
    "customer_id",
    "dimension",
    "old_label",
    "new_label",
    "changed_at",
    "policy_version",
];

/// A recorded label change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    /// Position in the change feed, from 1.
    pub sequence: i64,
    /// The customer.
    pub customer: Uuid,
    /// The dimension.
    pub dimension: Dimension,
    /// Before ("" none; for traits, "" when gained).
    pub old_label: String,
    /// After ("" none; for traits, "" when lost).
    pub new_label: String,
    /// The as_of of the classification that changed it.
    pub changed_at: DateTime<Utc>,
    /// The policy version.
    pub policy_version: i64,
}

/// The outbox of label changes: the change feed.
pub type Changes = Outbox<LabelChange>;

/// Opens the change feed's outbox over a migrated database.
pub async fn changes_outbox(db: Db) -> Result<Changes, Error> {
    Outbox::open(db, "label_changes", "change_counter").await
}

impl OutboxRecord for LabelChange {
    const COLUMNS: &'static [&'static str] = &CHANGE_COLUMNS;

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn values(&self) -> Result<Vec<Value>, Error> {
        Ok(vec![
            self.sequence.into(),
            self.customer.into(),
            self.dimension.name().into(),
            self.old_label.clone().into(),
            self.new_label.clone().into(),
            self.changed_at.into(),
            self.policy_version.into(),
        ])
    }

    fn decode(row: &QueryResult) -> Result<Self, Error> {
        label_change(row)
    }
}

/// Appends `changes` (their sequence is ignored) with gap-free sequence numbers; last in
/// the transaction (see [`Outbox::append`]).
pub async fn append_changes(
    outbox: &Changes,
    tx: &WriteTx,
    changes: Vec<LabelChange>,
) -> Result<Vec<LabelChange>, Error> {
    outbox
        .append(tx, changes, |change, sequence| LabelChange {
            sequence,
            ..change
        })
        .await
}

fn label_change(row: &QueryResult) -> Result<LabelChange, Error> {
    let dimension: String = row.try_get("", "dimension")?;
    Ok(LabelChange {
        sequence: row.try_get("", "sequence")?,
        customer: row.try_get("", "customer_id")?,
        dimension: Dimension::from_name(&dimension).ok_or_else(|| {
            Error::Internal(format!("corrupt dimension {dimension:?} in the database"))
        })?,
        old_label: row.try_get("", "old_label")?,
        new_label: row.try_get("", "new_label")?,
        changed_at: row.try_get("", "changed_at")?,
        policy_version: row.try_get("", "policy_version")?,
    })
}

fn changes_select() -> SelectStatement {
    Query::select()
        .columns(CHANGE_COLUMNS.map(t))
        .from(t("label_changes"))
        .to_owned()
}

// ---- queries over the classifications ----

fn label_column(dimension: Dimension) -> Option<&'static str> {
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
fn has_label(dimension: Dimension, code: &str) -> SimpleExpr {
    match label_column(dimension) {
        Some(column) => col(column).eq(code),
        // Codes are [A-Z_]: `_` is a LIKE wildcard, harmless between the commas.
        None => col("traits").like(format!("%,{code},%")),
    }
}

/// Up to `limit` classifications passing `filter` after customer `after`, in customer
/// id order.
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
    for (dimension, code) in &filter.labels {
        select.and_where(has_label(*dimension, code));
    }
    if let Some(region) = &filter.region {
        select.and_where(col("region").eq(region.as_str()));
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
    /// Customers.
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

/// Which label changes [`transitions`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionQuery {
    /// The dimension.
    pub dimension: Dimension,
    /// Only from this label.
    pub from: Option<String>,
    /// Only to this label.
    pub to: Option<String>,
    /// Changes at or after.
    pub start: DateTime<Utc>,
    /// Changes before.
    pub end: DateTime<Utc>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use clientela_domain::taxonomy::CustomerKind;

    use super::*;
    use crate::facts::{ComplaintFact, PurchaseFact, ReturnFact};

    #[test]
    fn codes_round_trip_and_keep_a_code_this_taxonomy_does_not_know() {
        let codes = Codes::read(
            ["FREQUENT", "ACTIVE", "", "HIGH", "NONE", "KEY", "CHAMPIONS"],
            ["PRICE_SENSITIVE", "RETIRED_TRAIT"],
        );
        let text = write_codes(&codes);
        assert_eq!(
            text,
            "FREQUENT|ACTIVE||HIGH|NONE|KEY|CHAMPIONS|,PRICE_SENSITIVE,RETIRED_TRAIT,"
        );
        assert_eq!(read_codes(&text).unwrap(), codes);
        assert!(matches!(codes.labels[0], std::borrow::Cow::Borrowed(_)));
        assert!(read_codes("A|B").is_err());
        assert_eq!(read_codes("|||||||").unwrap().traits.len(), 0);
    }

    #[test]
    fn inputs_round_trip_with_the_gaps_the_rules_read() {
        let inputs = Inputs {
            kind: CustomerKind::Organization,
            high_expectations: true,
            key_account: false,
            features: crate::facts::Features {
                purchases_total: 3,
                gap_secs: vec![86_400, 3 * 86_400],
                latest_nps: Some((9, Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap())),
                ..Default::default()
            },
        };
        let data = encode_inputs(&inputs).unwrap();
        assert_eq!(data[0], INPUTS_FORMAT);
        assert_eq!(postcard::from_bytes::<Inputs>(&data[1..]).unwrap(), inputs);
    }

    #[test]
    fn facts_round_trip_in_their_binary_form() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
            + chrono::Duration::microseconds(123_456);
        let mut facts = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Organization);
        facts.region = "Ñuble".into();
        facts.cost_to_serve_minor = Some(-5);
        facts.profile_at = Some(at);
        facts.referred_by = vec![Uuid::from_u128(2)];
        facts.purchases.push(PurchaseFact {
            id: Uuid::from_u128(3),
            at,
            currency_code: "CLP".into(),
            total_minor: 12_345,
            discounted: true,
            returns: vec![ReturnFact {
                id: Uuid::from_u128(4),
                at,
                amount_minor: 345,
            }],
        });
        facts.complaints.push(ComplaintFact {
            id: Uuid::from_u128(5),
            opened_at: at,
            resolved_at: None,
        });
        let data = encode_facts(&facts).unwrap();
        assert_eq!(data[0], FACTS_FORMAT);
        assert!(data.len() < serde_json::to_vec(&facts).unwrap().len() / 3);
        assert_eq!(decode_facts(&data).unwrap(), facts);
        let mut other = data.clone();
        other[0] = FACTS_FORMAT + 1;
        assert!(decode_facts(&other).is_err());
        assert!(decode_facts(&[]).is_err());
        assert!(decode_facts(&data[..data.len() - 3]).is_err());
    }
}
