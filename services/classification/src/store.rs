//! The engine's storage: statements built with sea-query, so the same code runs on
//! SQLite and PostgreSQL. Functions take any connection or transaction; no proto type
//! reaches here. Documents (results, policies) are JSON columns; facts are binary.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use clientela_runtime::Error;
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, SimpleExpr,
};
use sea_orm::{ConnectionTrait, QueryResult};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::classification::Classification;
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

/// A customer's facts as stored: about a quarter of their JSON, and much cheaper to
/// write and read, since every event rewrites its customer's record.
fn encode_facts(facts: &CustomerFacts) -> Result<Vec<u8>, Error> {
    let mut out = vec![FACTS_FORMAT];
    out.extend(
        postcard::to_allocvec(facts)
            .map_err(|e| Error::Internal(format!("encoding facts: {e}")))?,
    );
    Ok(out)
}

fn decode_facts(data: &[u8]) -> Result<CustomerFacts, Error> {
    match data.split_first() {
        Some((&FACTS_FORMAT, rest)) => postcard::from_bytes(rest)
            .map_err(|e| Error::Internal(format!("corrupt facts in the database: {e}"))),
        _ => Err(Error::Internal(
            "facts in the database in an unknown format".into(),
        )),
    }
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
    conn.query_all(&select)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("", "customer_id")?))
        .collect()
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
    counter(conn, "feed_cursor").await
}

async fn counter(conn: &impl ConnectionTrait, table: &str) -> Result<i64, Error> {
    let select = Query::select()
        .column(t("last_sequence"))
        .from(t(table))
        .and_where(col("id").eq(1))
        .to_owned();
    let row = conn
        .query_one(&select)
        .await?
        .ok_or_else(|| Error::Internal(format!("{table} row missing")))?;
    Ok(row.try_get("", "last_sequence")?)
}

/// Moves the cursor from `from` to `to`; ABORTED when another consumer moved it first
/// (its transaction is then the one that counts, and this one must roll back).
pub async fn advance_feed_cursor(
    conn: &impl ConnectionTrait,
    from: i64,
    to: i64,
) -> Result<(), Error> {
    let update = Query::update()
        .table(t("feed_cursor"))
        .value(t("last_sequence"), to)
        .and_where(col("id").eq(1))
        .and_where(col("last_sequence").eq(from))
        .to_owned();
    if conn.execute(&update).await?.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Error::Aborted {
            reason: "FEED_CURSOR_MOVED",
            message: format!("another consumer moved the feed cursor past {from}"),
        })
    }
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

/// The last population computed, if any.
pub async fn population(conn: &impl ConnectionTrait) -> Result<Option<PopulationSnapshot>, Error> {
    let select = Query::select()
        .column(t("body"))
        .from(t("population"))
        .and_where(col("id").eq(1))
        .to_owned();
    Ok(bodies(conn, &select).await?.pop())
}

/// Replaces the population.
pub async fn save_population(
    conn: &impl ConnectionTrait,
    snapshot: &PopulationSnapshot,
) -> Result<(), Error> {
    upsert(
        conn,
        "population",
        &["id", "policy_version", "as_of", "body"],
        vec![[
            1.into(),
            snapshot.policy_version.into(),
            snapshot.as_of.into(),
            to_json(snapshot)?.into(),
        ]],
        &["policy_version", "as_of", "body"],
    )
    .await
}

// ---- classifications ----

/// A stored result: its JSON, LZ4-compressed in `data` (a quarter of the size: a row
/// fits a page instead of spilling into overflow pages), or in `body` for a row written
/// before results were compressed (until that customer is classified again).
fn decode_classification(row: &QueryResult) -> Result<Classification, Error> {
    let Some(data) = row.try_get::<Option<Vec<u8>>>("", "data")? else {
        return from_json(row, "body");
    };
    let json = lz4_flex::decompress_size_prepended(&data)
        .map_err(|e| Error::Internal(format!("corrupt classification in the database: {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Internal(format!("corrupt classification in the database: {e}")))
}

fn encode_classification(c: &Classification) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(c)
        .map_err(|e| Error::Internal(format!("encoding a classification: {e}")))?;
    Ok(lz4_flex::compress_prepend_size(&json))
}

async fn classifications_of(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<Classification>, Error> {
    rows(conn, select, decode_classification).await
}

/// The current classifications of `ids` (customers not classified are left out).
pub async fn load_classifications(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Classification>, Error> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let select = Query::select()
            .columns([t("body"), t("data")])
            .from(t("classifications"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        for c in classifications_of(conn, &select).await? {
            out.insert(c.customer, c);
        }
    }
    Ok(out)
}

/// Writes `results`, replacing the customers' previous ones.
pub async fn save_classifications(
    conn: &impl ConnectionTrait,
    results: &[Classification],
) -> Result<(), Error> {
    let mut columns = vec!["customer_id", "policy_version", "as_of", "region"];
    columns.extend(LABEL_COLUMNS);
    columns.extend(["traits", "revenue_in_window", "body", "data"]);
    let columns: [&str; 15] = columns
        .try_into()
        .map_err(|_| Error::Internal("classification columns".into()))?;
    let rows = results
        .iter()
        .map(|c| {
            let codes = c.labels.codes();
            let code = |d: Dimension| -> SimpleExpr {
                codes
                    .iter()
                    .find(|(dim, _)| *dim == d)
                    .and_then(|(_, code)| *code)
                    .unwrap_or("")
                    .into()
            };
            let traits: String = c
                .labels
                .trait_codes()
                .iter()
                .map(|t| format!(",{t}"))
                .collect::<String>()
                + ",";
            Ok([
                c.customer.into(),
                c.policy_version.into(),
                c.as_of.into(),
                c.region.clone().into(),
                code(Dimension::LifecycleStage),
                code(Dimension::Activity),
                code(Dimension::Satisfaction),
                code(Dimension::Volume),
                code(Dimension::Influence),
                code(Dimension::AccountTier),
                code(Dimension::RfmSegment),
                traits.into(),
                c.features.revenue_in_window.into(),
                String::new().into(),
                encode_classification(c)?.into(),
            ])
        })
        .collect::<Result<Vec<_>, Error>>()?;
    upsert(conn, "classifications", &columns, rows, &columns[1..]).await
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

/// Appends `changes` (their sequence is ignored) with gap-free sequence numbers. Call
/// it last in the transaction: the counter row stays locked until commit.
pub async fn append_changes(
    conn: &impl ConnectionTrait,
    mut changes: Vec<LabelChange>,
) -> Result<Vec<LabelChange>, Error> {
    if changes.is_empty() {
        return Ok(changes);
    }
    let count = i64::try_from(changes.len()).map_err(|_| Error::Internal("too many".into()))?;
    let update = Query::update()
        .table(t("change_counter"))
        .value(t("last_sequence"), col("last_sequence").add(count))
        .and_where(col("id").eq(1))
        .returning_col(t("last_sequence"))
        .to_owned();
    let last: i64 = conn
        .query_one(&update)
        .await?
        .ok_or_else(|| Error::Internal("change_counter row missing".into()))?
        .try_get("", "last_sequence")?;
    for (change, sequence) in changes.iter_mut().zip(last - count + 1..) {
        change.sequence = sequence;
    }
    let mut rows = changes.iter().peekable();
    while rows.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(t("label_changes"))
            .columns(CHANGE_COLUMNS.map(t));
        for c in rows.by_ref().take(MAX_ROWS_PER_INSERT) {
            insert
                .values([
                    c.sequence.into(),
                    c.customer.into(),
                    c.dimension.name().into(),
                    c.old_label.clone().into(),
                    c.new_label.clone().into(),
                    c.changed_at.into(),
                    c.policy_version.into(),
                ])
                .map_err(sql_error)?;
        }
        conn.execute(&insert).await?;
    }
    Ok(changes)
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

/// Up to `limit` changes after `after`, in order.
pub async fn changes_after(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<LabelChange>, Error> {
    let select = changes_select()
        .and_where(col("sequence").gt(after))
        .order_by(t("sequence"), Order::Asc)
        .limit(limit)
        .to_owned();
    conn.query_all(&select)
        .await?
        .iter()
        .map(label_change)
        .collect()
}

/// The highest change sequence committed.
pub async fn last_change(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    let select = Query::select()
        .expr_as(Expr::col(t("sequence")).max(), t("last"))
        .from(t("label_changes"))
        .to_owned();
    let row = conn.query_one(&select).await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "last"))
        .transpose()?
        .flatten()
        .unwrap_or(0))
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
) -> Result<Vec<Classification>, Error> {
    let mut select = Query::select()
        .columns([t("body"), t("data")])
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
    classifications_of(conn, &select).await
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
    conn.query_all(&select)
        .await?
        .iter()
        .map(label_change)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use clientela_domain::taxonomy::CustomerKind;

    use super::*;
    use crate::facts::{ComplaintFact, PurchaseFact, ReturnFact};

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
