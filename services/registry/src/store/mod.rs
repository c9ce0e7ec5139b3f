//! The registry's storage: sea-orm entities and the queries the rules need. Functions
//! take any connection or transaction; no proto type reaches here.

pub mod customers;
pub mod entity;
pub mod events;
pub mod history;

use clientela_runtime::Error;

/// Values in one `IN (...)` list. SQLite binds at most 32,766 parameters a statement and
/// PostgreSQL 65,535; a thousand keeps every statement well inside both and its plan small.
pub(crate) const MAX_IN_LIST: usize = 1_000;

/// Rows in one multi-row INSERT (each row binds about ten parameters; see [`MAX_IN_LIST`]).
pub(crate) const MAX_ROWS_PER_INSERT: usize = 500;

/// Serializes a stored JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("encoding a JSON column: {e}")))
}

/// Parses a stored JSON column; a failure means corrupt data, not a caller's mistake.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("corrupt {what} in the database: {e}")))
}

/// Parses a stored label code.
pub(crate) fn from_code<T: clientela_domain::Labeled>(code: &str, what: &str) -> Result<T, Error> {
    T::from_code(code)
        .ok_or_else(|| Error::Internal(format!("corrupt {what} code {code:?} in the database")))
}
