//! Statements written by hand, for what sea-query cannot say (`UPDATE ... FROM`, a join
//! on a `VALUES` list), with their parameters numbered as the backend wants.

use std::fmt::Write as _;

use sea_orm::{DbBackend, Statement};

/// Rows of one `WITH v AS (VALUES ...)` list: a thousand rows of four values stay far
/// below SQLite's 32,766 parameters and PostgreSQL's 65,535.
pub const MAX_ROWS_PER_VALUES: usize = 1_000;

/// A statement's text and its parameters.
pub struct Raw {
    backend: DbBackend,
    sql: String,
    values: Vec<sea_orm::Value>,
}

impl Raw {
    /// An empty statement for `backend`, sized for about `rows` rows.
    pub fn new(backend: DbBackend, rows: usize) -> Self {
        Self {
            backend,
            sql: String::with_capacity(40 * rows + 400),
            values: Vec::with_capacity(4 * rows + 3),
        }
    }

    /// Appends SQL text.
    pub fn text(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a parameter's placeholder and binds `value` to it.
    pub fn param(&mut self, value: impl Into<sea_orm::Value>) -> &mut Self {
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
    pub fn with_values<const N: usize>(
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

    /// The statement, to execute.
    pub fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_not_for_sqlite() {
        for (backend, wanted) in [
            (
                DbBackend::Postgres,
                "WITH v (a, b) AS (VALUES ($1, $2), ($3, $4)) SELECT $5",
            ),
            (
                DbBackend::Sqlite,
                "WITH v (a, b) AS (VALUES (?, ?), (?, ?)) SELECT ?",
            ),
        ] {
            let mut raw = Raw::new(backend, 2);
            raw.with_values(
                "a, b",
                [[1i64.into(), 2i64.into()], [3i64.into(), 4i64.into()]],
            )
            .text("SELECT ")
            .param(5i64);
            let statement = raw.statement();
            assert_eq!(statement.sql, wanted);
            assert_eq!(statement.values.map_or(0, |v| v.0.len()), 5);
        }
    }
}
