//! The producer side of a feed (transactional outbox): records appended in the writer's
//! transaction with gap-free, increasing sequence numbers, read back in order, and the
//! feed's watchers woken when the transaction commits.

use std::marker::PhantomData;
use std::sync::Arc;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, QueryResult, Value};
use sea_orm_migration::SchemaManager;
use sea_orm_migration::prelude::Table;
use sea_orm_migration::schema::{big_integer, integer};
use tokio::sync::watch;

use crate::{Db, Error, WriteTx};

/// Rows in one multi-row INSERT (well inside both engines' parameter limits).
const ROWS_PER_INSERT: usize = 500;

/// A record of an outbox table: how it is written and read.
pub trait OutboxRecord: Sized + Send + 'static {
    /// The table's columns as [`OutboxRecord::values`] gives them; `sequence` first.
    const COLUMNS: &'static [&'static str];

    /// Its sequence number.
    fn sequence(&self) -> i64;

    /// Its values, in the order of [`OutboxRecord::COLUMNS`].
    fn values(&self) -> Result<Vec<Value>, Error>;

    /// A record read from a row of [`OutboxRecord::COLUMNS`].
    fn decode(row: &QueryResult) -> Result<Self, Error>;
}

/// An outbox table and its counter: a one-row table (`id` 1, `last_sequence`) that
/// [`create_sequence_table`] makes.
pub struct Outbox<R> {
    db: Db,
    table: &'static str,
    counter: &'static str,
    committed: Arc<watch::Sender<i64>>,
    _record: PhantomData<fn() -> R>,
}

impl<R> Clone for Outbox<R> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            table: self.table,
            counter: self.counter,
            committed: self.committed.clone(),
            _record: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Outbox<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("table", &self.table)
            .field("last_committed", &*self.committed.borrow())
            .finish_non_exhaustive()
    }
}

impl<R: OutboxRecord> Outbox<R> {
    /// The outbox of `table`, counted by `counter`, in a migrated database.
    pub async fn open(db: Db, table: &'static str, counter: &'static str) -> Result<Self, Error> {
        let outbox = Self {
            db,
            table,
            counter,
            committed: Arc::new(watch::channel(0).0),
            _record: PhantomData,
        };
        let last = outbox.last_sequence().await?;
        outbox.committed.send_replace(last);
        Ok(outbox)
    }

    /// Appends one record per item, numbered after the last one: `build` makes each from
    /// its item and its sequence number. Call it last in the transaction: the counter row
    /// it updates stays locked until commit, which keeps the numbers gap-free and visible
    /// in order, and the shorter that lock is held the better. The feed's watchers are
    /// woken when `tx` commits.
    pub async fn append<I>(
        &self,
        tx: &WriteTx,
        items: Vec<I>,
        mut build: impl FnMut(I, i64) -> R,
    ) -> Result<Vec<R>, Error> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let conn = tx.conn();
        let count = i64::try_from(items.len())
            .map_err(|_| Error::Internal("too many records for one append".into()))?;
        let last = add_to_sequence(conn, self.counter, count).await?;
        let records: Vec<R> = items
            .into_iter()
            .zip(last - count + 1..)
            .map(|(item, sequence)| build(item, sequence))
            .collect();
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(self.table))
                .columns(R::COLUMNS.iter().map(|c| Alias::new(*c)));
            for record in chunk {
                insert
                    .values(record.values()?.into_iter().map(Into::into))
                    .map_err(|e| Error::Internal(format!("outbox {}: {e}", self.table)))?;
            }
            conn.execute(&insert).await?;
        }
        let committed = self.committed.clone();
        tx.after_commit(move || {
            committed.send_if_modified(|seq| {
                let moved = last > *seq;
                *seq = Ord::max(*seq, last);
                moved
            });
        });
        Ok(records)
    }

    /// Up to `limit` records after `after`, in order.
    pub async fn read_after(&self, after: i64, limit: u64) -> Result<Vec<R>, Error> {
        self.read_columns_after(R::COLUMNS, after, limit, R::decode)
            .await
    }

    /// Up to `limit` rows after `after`, in order, of `columns` only, each decoded by
    /// `decode` (a feed that keeps its records' wire form reads that column alone).
    pub async fn read_columns_after<T>(
        &self,
        columns: &[&str],
        after: i64,
        limit: u64,
        decode: impl Fn(&QueryResult) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let select = Query::select()
            .columns(columns.iter().map(|c| Alias::new(*c)))
            .from(Alias::new(self.table))
            .and_where(Expr::col(Alias::new("sequence")).gt(after))
            .order_by(Alias::new("sequence"), Order::Asc)
            .limit(limit)
            .to_owned();
        self.db
            .conn()
            .query_all(&select)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// The highest sequence number committed.
    pub async fn last_sequence(&self) -> Result<i64, Error> {
        read_sequence(self.db.conn(), self.counter).await
    }

    /// Changes when a transaction of this process that appended commits, to its last
    /// sequence number: what wakes a feed's watchers (other replicas' commits are seen by
    /// polling).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// The last sequence this process saw committed: at least that of every append it
    /// committed itself (the watchers are woken at commit, before the writer returns).
    pub fn committed(&self) -> i64 {
        *self.committed.borrow()
    }
}

/// Adds `count` to a sequence table's number in the caller's transaction and returns the
/// new number; the row stays locked until the transaction ends.
pub async fn add_to_sequence(
    conn: &impl ConnectionTrait,
    table: &str,
    count: i64,
) -> Result<i64, Error> {
    let update = Query::update()
        .table(Alias::new(table))
        .value(
            Alias::new("last_sequence"),
            Expr::col(Alias::new("last_sequence")).add(count),
        )
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .returning_col(Alias::new("last_sequence"))
        .to_owned();
    conn.query_one(&update)
        .await?
        .ok_or_else(|| Error::Internal(format!("the {table} row is missing")))?
        .try_get("", "last_sequence")
        .map_err(Error::from)
}

/// The number a sequence table holds.
pub async fn read_sequence(conn: &impl ConnectionTrait, table: &str) -> Result<i64, Error> {
    let select = Query::select()
        .column(Alias::new("last_sequence"))
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .to_owned();
    conn.query_one(&select)
        .await?
        .ok_or_else(|| Error::Internal(format!("the {table} row is missing")))?
        .try_get("", "last_sequence")
        .map_err(Error::from)
}

/// Creates a sequence table (`id` 1, `last_sequence` 0): an outbox's counter, or a
/// consumer's cursor over another service's feed. For a service's migrations.
pub async fn create_sequence_table(
    m: &SchemaManager<'_>,
    name: &str,
) -> Result<(), sea_orm::DbErr> {
    m.create_table(
        Table::create()
            .table(Alias::new(name))
            .col(integer(Alias::new("id")).primary_key())
            .col(big_integer(Alias::new("last_sequence")))
            .to_owned(),
    )
    .await?;
    let insert = Query::insert()
        .into_table(Alias::new(name))
        .columns([Alias::new("id"), Alias::new("last_sequence")])
        .values([1.into(), 0i64.into()])
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .to_owned();
    m.get_connection().execute(&insert).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use super::*;
    use crate::settings::DatabaseSettings;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Note {
        sequence: i64,
        text: String,
    }

    impl OutboxRecord for Note {
        const COLUMNS: &'static [&'static str] = &["sequence", "text"];

        fn sequence(&self) -> i64 {
            self.sequence
        }

        fn values(&self) -> Result<Vec<Value>, Error> {
            Ok(vec![self.sequence.into(), self.text.clone().into()])
        }

        fn decode(row: &QueryResult) -> Result<Self, Error> {
            Ok(Self {
                sequence: row.try_get("", "sequence")?,
                text: row.try_get("", "text")?,
            })
        }
    }

    async fn notes() -> (Outbox<Note>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("notes.db").display()
        );
        let db = Db::connect(&url, &DatabaseSettings::default())
            .await
            .expect("SQLite file");
        db.conn()
            .execute_raw(Statement::from_string(
                DbBackend::Sqlite,
                "CREATE TABLE notes (sequence BIGINT PRIMARY KEY, text TEXT NOT NULL)",
            ))
            .await
            .expect("notes table");
        create_sequence_table(&SchemaManager::new(db.conn()), "notes_counter")
            .await
            .expect("counter table");
        let outbox = Outbox::open(db, "notes", "notes_counter")
            .await
            .expect("open");
        (outbox, dir)
    }

    fn note(text: &str, sequence: i64) -> Note {
        Note {
            sequence,
            text: text.to_owned(),
        }
    }

    #[tokio::test]
    async fn appends_are_numbered_without_gaps_and_wake_watchers_only_on_commit() {
        let (outbox, _dir) = notes().await;
        let mut woken = outbox.subscribe();
        let db = outbox.db.clone();

        let tx = db.begin_write().await.expect("begin");
        let appended = outbox
            .append(&tx, vec!["a", "b", "c"], note)
            .await
            .expect("append");
        assert_eq!(
            appended.iter().map(Note::sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            !woken.has_changed().expect("sender alive"),
            "woken before the commit"
        );
        tx.commit().await.expect("commit");
        assert!(woken.has_changed().expect("sender alive"));
        assert_eq!(*woken.borrow_and_update(), 3);

        // A rolled-back append leaves neither rows nor a gap, and wakes nobody.
        let tx = db.begin_write().await.expect("begin");
        outbox
            .append(&tx, vec!["lost"], note)
            .await
            .expect("append");
        tx.rollback().await.expect("rollback");
        assert!(!woken.has_changed().expect("sender alive"));

        let tx = db.begin_write().await.expect("begin");
        outbox.append(&tx, vec!["d"], note).await.expect("append");
        tx.commit().await.expect("commit");
        assert_eq!(*woken.borrow_and_update(), 4);

        let all = outbox.read_after(0, 10).await.expect("read");
        let texts: Vec<(i64, &str)> = all.iter().map(|n| (n.sequence, n.text.as_str())).collect();
        assert_eq!(texts, [(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
        assert_eq!(outbox.read_after(2, 1).await.expect("read"), [note("c", 3)]);
        assert_eq!(outbox.last_sequence().await.expect("last"), 4);
        // A reopened outbox starts from what is committed.
        let again = Outbox::<Note>::open(db, "notes", "notes_counter")
            .await
            .expect("reopen");
        assert_eq!(*again.subscribe().borrow(), 4);
    }

    #[tokio::test]
    async fn a_large_append_is_inserted_in_several_statements_in_order() {
        let (outbox, _dir) = notes().await;
        let texts: Vec<String> = (0..ROWS_PER_INSERT * 2 + 7)
            .map(|n| n.to_string())
            .collect();
        let tx = outbox.db.begin_write().await.expect("begin");
        outbox
            .append(&tx, texts.clone(), |text, sequence| Note { sequence, text })
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        let read = outbox.read_after(0, 10_000).await.expect("read");
        assert_eq!(read.len(), texts.len());
        for (i, n) in read.iter().enumerate() {
            assert_eq!(
                (n.sequence, n.text.as_str()),
                (i as i64 + 1, texts[i].as_str())
            );
        }
    }
}
