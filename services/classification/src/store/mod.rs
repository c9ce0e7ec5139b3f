//! The engine's storage: statements built with sea-query, so the same code runs on
//! SQLite and PostgreSQL. Functions take any connection or transaction; no proto type
//! reaches here. Documents (results, policies) are JSON columns; facts are binary. One
//! file per table or concern; the fast paths that exist for SQLite only are fenced in
//! `sqlite.rs`, which says why.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use clientela_runtime::feed::outbox::{add_to_sequence, read_sequence};
use clientela_runtime::feed::{Outbox, OutboxRecord};
use clientela_runtime::{Db, Error, WriteTx};
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, SimpleExpr,
};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::classification::{
    Classification, Codes, Inputs, InputsV1, LabelChange, TransitionQuery,
};
use crate::facts::CustomerFacts;
use crate::filter::Filter;
use crate::labels::Dimension;
use crate::policy::{Policy, PolicyVersion};

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

mod changes;
mod classifications;
mod facts;
mod horizon;
mod kept;
mod pending;
mod policies;
mod population;
mod queries;
mod revenue;
mod sqlite;
#[cfg(test)]
mod tests;

pub use changes::*;
pub use classifications::*;
pub use facts::*;
pub use horizon::*;
pub use kept::*;
pub use pending::*;
pub use policies::*;
pub use population::*;
pub use queries::*;
pub use revenue::*;
pub(crate) use sqlite::*;
