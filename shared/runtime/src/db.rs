//! Database connect and migrate with sea-orm, for SQLite and PostgreSQL alike, and the
//! write gate that keeps SQLite's single writer from failing under concurrent callers.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::settings::DatabaseSettings;

/// A service's database: the pool, plus a gate that serializes write transactions on
/// SQLite.
///
/// SQLite allows one writer at a time; a deferred transaction that reads and then writes
/// fails with SQLITE_BUSY (not a wait) when another writer got there first. Queuing the
/// writers in-process turns that failure into a short wait. PostgreSQL needs no gate.
///
/// On SQLite, writes also have a connection of their own with a larger page cache (a
/// batch of inserts into several indexes otherwise spills dirty pages to the WAL before
/// commit and reads back pages it just evicted); the read connections keep SQLite's
/// default 2 MiB each, which keeps the process's memory small.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite's write connection; `None`: writes use the pool like reads.
    writer: Option<DatabaseConnection>,
    write_gate: Option<Arc<Mutex<()>>>,
    /// A SQLite file's read-only connections, for reads on the calling thread.
    sqlite_reads: Option<Arc<SqliteReads>>,
    /// A SQLite file's checkpoints, run beside the writer.
    checkpointer: Option<Arc<Checkpointer>>,
}

/// Page cache of SQLite's write connection, in KiB.
const SQLITE_WRITER_CACHE_KIB: u32 = 16 * 1024;

/// WAL pages past which the writer checkpoints at commit itself (SQLite's default is
/// 1,000; 400 MiB here). The WAL starts over only at a write transaction that begins
/// with all of it copied, which back-to-back feed batches never do, so under a steady
/// feed it grows to this and the writer copies the rest once. Readers do not pay for a
/// long WAL: they search only the frames not yet copied.
const SQLITE_WRITER_CHECKPOINT_PAGES: u32 = 100_000;

/// What the WAL file is cut back to when it starts over (SQLite keeps its largest size).
const SQLITE_WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// The least time between two of the [`Checkpointer`]'s checkpoints: commits that come
/// faster share one.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// A connection or a transaction, as a service's logic hands it back to its store: the
/// logic passes it on and never queries through it (only store code names sea-orm).
pub trait Conn: ConnectionTrait + Sync {}

impl<T: ConnectionTrait + Sync> Conn for T {}

/// A savepoint inside a [`WriteTx`]: a part of the transaction that can be undone alone.
#[derive(Debug)]
pub struct Savepoint(DatabaseTransaction);

impl Savepoint {
    /// The savepoint, for queries.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.0
    }

    /// Keeps its writes in the transaction.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.0.commit().await
    }

    /// Undoes its writes, and only those.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.0.rollback().await
    }
}

/// A write transaction; on SQLite it also holds the write gate until commit or drop.
pub struct WriteTx {
    txn: DatabaseTransaction,
    gate: Option<OwnedMutexGuard<()>>,
    /// Run once the commit returns (an outbox wakes its watchers here).
    after_commit: std::sync::Mutex<Vec<AfterCommit>>,
    checkpointer: Option<Arc<Checkpointer>>,
}

type AfterCommit = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").finish_non_exhaustive()
    }
}

impl WriteTx {
    /// The transaction, for queries.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Begins a savepoint.
    pub async fn savepoint(&self) -> Result<Savepoint, DbErr> {
        self.txn.begin().await.map(Savepoint)
    }

    /// Runs `f` after this transaction commits; never if it rolls back or is dropped.
    pub fn after_commit(&self, f: impl FnOnce() + Send + 'static) {
        if let Ok(mut hooks) = self.after_commit.lock() {
            hooks.push(Box::new(f));
        }
    }

    /// Commits; the gate opens after the commit. The [`WriteTx::after_commit`] hooks run
    /// even when the commit reports an error: it may have happened all the same, and a
    /// watcher woken for nothing only reads again.
    pub async fn commit(self) -> Result<(), DbErr> {
        let Self {
            txn,
            gate,
            after_commit,
            checkpointer,
        } = self;
        let committed = txn.commit().await;
        drop(gate);
        if let Some(checkpointer) = checkpointer {
            checkpointer.wake();
        }
        for hook in after_commit.into_inner().unwrap_or_default() {
            hook();
        }
        committed
    }

    /// Rolls back (dropping it does too, but without reporting an error).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

/// Rows sqlx's SQLite thread may run ahead of the reading task.
const SQLITE_ROW_BUFFER: usize = 1024;

impl Db {
    /// Connects to `url` (`sqlite://...` or `postgres://...`), creating a SQLite file's
    /// folder if needed.
    pub async fn connect(url: &str, settings: &DatabaseSettings) -> Result<Self, DbErr> {
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(DbErr::Custom(
                "unsupported database URL: use postgres://… or sqlite://…".to_owned(),
            ));
        }
        if is_sqlite {
            create_sqlite_dir(url)?;
        }
        let options = |max_connections: u32, writer: bool| {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(max_connections)
                .min_connections(if is_sqlite { 1 } else { 0 })
                .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs.max(1)))
                .connect_timeout(Duration::from_secs(10))
                .sqlx_logging(false)
                .map_sqlx_sqlite_opts(move |o| {
                    let o = o
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                        // Savepoint sub-journals in memory, not in a temporary file.
                        .pragma("temp_store", "memory")
                        // sqlx hands rows from its SQLite thread to the task one at a
                        // time through a bounded channel (50 by default): on a busy core
                        // the two then wake each other every few rows. A larger buffer
                        // lets a page or a feed batch cross in a few wake-ups.
                        .row_buffer_size(SQLITE_ROW_BUFFER);
                    if !writer {
                        return o;
                    }
                    // The checkpointer copies the WAL into the file beside the writer;
                    // the writer checkpoints itself only past this, should it fall behind.
                    o.pragma("cache_size", format!("-{SQLITE_WRITER_CACHE_KIB}"))
                        .pragma(
                            "wal_autocheckpoint",
                            SQLITE_WRITER_CHECKPOINT_PAGES.to_string(),
                        )
                        .pragma("journal_size_limit", SQLITE_WAL_KEPT_BYTES.to_string())
                })
                // Every query of a service reads a page or a few rows. PostgreSQL still
                // plans some pages in parallel: a tag-filtered page of 50 spent 13 ms
                // starting workers for 2.5 ms of work, and with 64 requests in flight the
                // workers only competed for the same cores (docs/BENCHMARKS.md).
                .map_sqlx_postgres_opts(|o| o.options([("max_parallel_workers_per_gather", "0")]));
            options
        };
        let conn =
            sea_orm::Database::connect(options(settings.max_connections.max(1), false)).await?;
        if !is_sqlite {
            return Ok(Self {
                conn,
                writer: None,
                write_gate: None,
                sqlite_reads: None,
                checkpointer: None,
            });
        }
        // An in-memory database exists once per connection: one pool must serve both.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let (writer, sqlite_reads, checkpointer) = if in_memory {
            (None, None, None)
        } else {
            let writer = sea_orm::Database::connect(options(1, true)).await?;
            let path = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbErr::Custom(format!("the SQLite URL: {e}")))?
                .get_filename()
                .to_owned();
            let checkpointer = Checkpointer::start(&path)?;
            (
                Some(writer),
                Some(Arc::new(SqliteReads::new(path))),
                Some(Arc::new(checkpointer)),
            )
        };
        Ok(Self {
            conn,
            writer,
            write_gate: Some(Arc::new(Mutex::new(()))),
            sqlite_reads,
            checkpointer,
        })
    }

    fn writer(&self) -> &DatabaseConnection {
        self.writer.as_ref().unwrap_or(&self.conn)
    }

    /// The pool, for reads.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Whether writes are serialized in this process (SQLite: one writer, the write gate),
    /// so nothing else writes the database: what a cache of rows or a single writing
    /// batch may rely on. False on PostgreSQL, where other replicas write too.
    pub fn single_writer(&self) -> bool {
        self.write_gate.is_some()
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// A read-only transaction on the read pool whose statements PostgreSQL plans for
    /// their bound values every time. Use it for queries whose best plan depends on the
    /// values: a page filtered by a tag that a tenth of customers carry ran a generic
    /// plan, chosen after five executions, that read all 10,000 tagged customers and
    /// sorted them (50 ms) instead of walking the page order (2.5 ms). Forcing custom
    /// plans for the whole session cost point lookups 30 % (docs/BENCHMARKS.md).
    pub async fn begin_planned_read(&self) -> Result<DatabaseTransaction, DbErr> {
        let tx = self.conn.begin().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared(
                "SET TRANSACTION READ ONLY; SET LOCAL plan_cache_mode = force_custom_plan",
            )
            .await?;
        }
        Ok(tx)
    }

    /// A read-only transaction whose statements see one commit (PostgreSQL's REPEATABLE
    /// READ; SQLite's read transactions already do), for a few point reads that must
    /// agree; planned as usual, unlike [`Db::begin_snapshot_read`].
    pub async fn begin_repeatable_read(&self) -> Result<DatabaseTransaction, DbErr> {
        let tx = self.conn.begin().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        }
        Ok(tx)
    }

    /// A read-only transaction that sees one snapshot from its first statement to its
    /// last, for reads over many statements that must agree (a realignment's preview):
    /// PostgreSQL's REPEATABLE READ; SQLite's read transactions already do.
    pub async fn begin_snapshot_read(&self) -> Result<DatabaseTransaction, DbErr> {
        let tx = self.conn.begin().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL plan_cache_mode = force_custom_plan",
            )
            .await?;
        }
        Ok(tx)
    }

    /// Refreshes the planner's statistics of `tables` after a bulk load. On PostgreSQL a
    /// freshly loaded table plans as if nearly empty until autovacuum's next ANALYZE, a
    /// minute or more later: a tag matching 10,000 customers was estimated at 2 rows and
    /// a page of 50 took 340 ms (docs/BENCHMARKS.md). SQLite plans by its heuristics (no
    /// `sqlite_stat1` is ever gathered), which the indexes are chosen for: nothing to do.
    pub async fn refresh_statistics(&self, tables: &[&str]) -> Result<(), DbErr> {
        if self.backend() != DbBackend::Postgres || tables.is_empty() {
            return Ok(());
        }
        if let Some(bad) = tables
            .iter()
            .find(|t| t.is_empty() || !t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        {
            return Err(DbErr::Custom(format!("not a table name: {bad:?}")));
        }
        self.conn
            .execute_unprepared(&format!("ANALYZE {}", tables.join(", ")))
            .await
            .map(|_| ())
    }

    /// Holds back every write transaction of this process until dropped, for reads on
    /// different connections that must see the same commit: begin them all while held.
    /// None on PostgreSQL, where other replicas write all the same (use one
    /// transaction there).
    pub async fn hold_writes(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Begins a write transaction (waiting for the gate on SQLite).
    pub async fn begin_write(&self) -> Result<WriteTx, DbErr> {
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let txn = self.writer().begin().await?;
        Ok(WriteTx {
            txn,
            gate,
            after_commit: std::sync::Mutex::default(),
            checkpointer: self.checkpointer.clone(),
        })
    }

    /// Runs the pending migrations of `M`. On PostgreSQL they run inside one transaction
    /// holding an advisory lock, so replicas starting together never race: the first one
    /// migrates, the others wait and then find nothing to do.
    pub async fn migrate<M: MigratorTrait>(&self, lock_name: &str) -> Result<(), DbErr> {
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.conn.begin().await?;
                transaction_lock(&txn, lock_name).await?;
                M::up(&txn, None).await?;
                txn.commit().await
            }
            _ => {
                let _gate = match &self.write_gate {
                    Some(gate) => Some(gate.clone().lock_owned().await),
                    None => None,
                };
                M::up(self.writer(), None).await
            }
        }
    }

    /// Runs `read` on a read-only connection to the SQLite file, on the calling thread;
    /// None when the database is not a SQLite file (PostgreSQL, or SQLite in memory): read
    /// through the pool then.
    ///
    /// For a request's reads of a few rows by key, and for bulk reads on a blocking
    /// thread. sqlx runs each SQLite connection on a thread of its own and hands every
    /// statement and row across a channel: for a one-row read that hand-off (thread
    /// wake-ups, copies) costs more than the read, which SQLite answers from its cache in
    /// microseconds, and a scan pays it per row. `read` holds the calling thread: keep it
    /// short on an async worker.
    pub fn sqlite_read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<Result<T, DbErr>> {
        self.sqlite_reads.as_ref().map(|reads| reads.run(read))
    }

    /// Whether [`Db::sqlite_read`] reads (the database is a SQLite file).
    pub fn has_sqlite_reads(&self) -> bool {
        self.sqlite_reads.is_some()
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Closes the pool.
    pub async fn close(&self) -> Result<(), DbErr> {
        self.conn.close_by_ref().await?;
        match &self.writer {
            Some(writer) => writer.close_by_ref().await,
            None => Ok(()),
        }
    }
}

/// A statement built by sea-query, in SQLite's SQL with its parameters as rusqlite
/// binds them, so that a direct read ([`Db::sqlite_read`]) runs the very statement the
/// pool would. Values are bound as sqlx binds them (ids as 16 bytes); kinds a read has
/// no use for binding (instants, decimals, JSON) are refused rather than guessed.
pub fn sqlite_statement(
    statement: &impl sea_orm::sea_query::QueryStatementWriter,
) -> Result<(String, Vec<rusqlite::types::Value>), DbErr> {
    use rusqlite::types::Value as V;
    use sea_orm::Value;
    let (sql, values) = statement.build(sea_orm::sea_query::SqliteQueryBuilder);
    let bound = values
        .into_iter()
        .map(|value| {
            Ok(match value {
                Value::Bool(v) => v.map_or(V::Null, |b| V::Integer(i64::from(b))),
                Value::Int(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
                Value::BigInt(v) => v.map_or(V::Null, V::Integer),
                Value::Unsigned(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
                Value::BigUnsigned(Some(n)) => V::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
                Value::BigUnsigned(None) => V::Null,
                Value::String(v) => v.map_or(V::Null, V::Text),
                Value::Bytes(v) => v.map_or(V::Null, V::Blob),
                Value::Uuid(v) => v.map_or(V::Null, |u| V::Blob(u.as_bytes().to_vec())),
                other => {
                    return Err(DbErr::Custom(format!(
                        "a direct SQLite read does not bind {other:?}"
                    )));
                }
            })
        })
        .collect::<Result<_, DbErr>>()?;
    Ok((sql, bound))
}

/// Read-only connections to a SQLite file, opened when first needed and kept for reuse.
// Written here rather than with r2d2 or deadpool: a read never waits for a connection
// (it opens another when none is idle, and at most a few are kept), so there is no
// acquire queue, timeout or health check to configure, only a stack of idle ones.
#[derive(Debug)]
struct SqliteReads {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read-only connections kept (about one per thread that reads at once).
const MAX_IDLE_SQLITE_READS: usize = 16;

impl SqliteReads {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: std::sync::Mutex::default(),
        }
    }

    fn run<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbErr> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = read(&conn).map_err(|e| DbErr::Custom(format!("reading SQLite: {e}")));
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_SQLITE_READS
        {
            idle.push(conn);
        }
        out
    }

    fn open(&self) -> Result<rusqlite::Connection, DbErr> {
        use rusqlite::OpenFlags;
        let failed = |e: rusqlite::Error| {
            DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
                "opening {} to read: {e}",
                self.path.display()
            )))
        };
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        // As the pool's connections: a reader waits out a checkpoint's brief lock.
        conn.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
        Ok(conn)
    }
}

/// Copies a SQLite file's WAL back into the file on a thread and a connection of its
/// own, after commits. SQLite's automatic checkpoint runs inside the commit that crosses
/// 1,000 WAL pages, on the writer: a feed batch then waited for the copy and its fsync
/// (about half of its commit) while the other core idled. A passive checkpoint never
/// blocks the writer or readers, and commits that come while one runs share the next.
// A thread of its own rather than blocking tasks: it lives as long as the database.
#[derive(Debug)]
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
}

impl Checkpointer {
    fn start(path: &std::path::Path) -> Result<Self, DbErr> {
        use rusqlite::OpenFlags;
        let failed = |e: rusqlite::Error| {
            DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
                "opening {} to checkpoint: {e}",
                path.display()
            )))
        };
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
        // One pending wake is enough: a checkpoint copies every commit before it.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the last Db clone drops the sender.
                while woken.recv().is_ok() {
                    let started = std::time::Instant::now();
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                    });
                    match done {
                        Ok((wal_pages, copied)) => tracing::debug!(
                            wal_pages,
                            copied,
                            ms = started.elapsed().as_millis() as u64,
                            "WAL checkpointed"
                        ),
                        Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed"),
                    }
                    std::thread::sleep(CHECKPOINT_INTERVAL.saturating_sub(started.elapsed()));
                }
            })
            .map_err(|e| DbErr::Custom(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { wake })
    }

    /// Asks for a checkpoint (after a commit); never waits.
    fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

/// Takes the transaction-scoped lock `name` if no other transaction holds it: true when
/// taken (held until commit or rollback). On PostgreSQL an advisory lock; SQLite has one
/// writer, which the write gate already is, so it is always true there.
pub async fn try_transaction_lock(conn: &impl ConnectionTrait, name: &str) -> Result<bool, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(true);
    }
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1)",
            [advisory_key(name).into()],
        ))
        .await?;
    match row {
        Some(row) => row.try_get_by_index(0),
        None => Ok(false),
    }
}

/// Waits for the transaction-scoped lock `name` (held until commit or rollback). On
/// PostgreSQL an advisory lock; on SQLite the write gate already serializes writers.
pub async fn transaction_lock(conn: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [advisory_key(name).into()],
    ))
    .await
    .map(|_| ())
}

/// A stable 63-bit key for `pg_advisory_xact_lock`, from a name (FNV-1a, written out
/// because the key must not change between Rust releases, unlike `DefaultHasher`).
fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1) as i64
}

fn create_sqlite_dir(url: &str) -> Result<(), DbErr> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` builds SQLite with the query planner stability guarantee;
    /// a build without it re-compiles every `LIMIT ?` query at each execution.
    #[tokio::test]
    async fn sqlite_plans_do_not_depend_on_bound_values() {
        let db = Db::connect("sqlite::memory:", &DatabaseSettings::default())
            .await
            .expect("in-memory SQLite");
        let options: Vec<String> = db
            .conn()
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA compile_options",
            ))
            .await
            .expect("compile options")
            .iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .collect();
        for wanted in ["ENABLE_QPSG", "DEFAULT_MEMSTATUS=0"] {
            assert!(
                options.iter().any(|o| o == wanted),
                "SQLite was built without SQLITE_{wanted} (LIBSQLITE3_FLAGS): {options:?}"
            );
        }
    }

    /// Direct reads see what the pool committed; SQLite in memory (one database per
    /// connection) has none.
    #[tokio::test]
    async fn direct_reads_read_a_sqlite_file_and_not_memory() {
        let memory = Db::connect("sqlite::memory:", &DatabaseSettings::default())
            .await
            .expect("in-memory SQLite");
        assert!(memory.sqlite_read(|_| Ok(())).is_none());
        let dir = std::env::temp_dir().join(format!("clientela-db-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", dir.join("point.db").display());
        let db = Db::connect(&url, &DatabaseSettings::default())
            .await
            .expect("SQLite file");
        let tx = db.begin_write().await.expect("begin");
        tx.conn()
            .execute_unprepared("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)")
            .await
            .expect("write");
        tx.commit().await.expect("commit");
        let read = db.sqlite_read(|c| c.query_row("SELECT v FROM t", [], |r| r.get(0)));
        assert_eq!(read.map(Result::ok), Some(Some(7i64)));
        // Read-only: a write through it fails.
        let write = db.sqlite_read(|c| c.execute("INSERT INTO t VALUES (8)", []));
        assert!(matches!(write, Some(Err(_))), "{write:?}");
        db.close().await.expect("close");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The checkpointer copies a commit's WAL pages into the file beside the writer,
    /// below the writer's own threshold.
    #[tokio::test]
    async fn commits_are_checkpointed_beside_the_writer() {
        let dir = std::env::temp_dir().join(format!("clientela-db-{}", uuid::Uuid::now_v7()));
        let file = dir.join("checkpointed.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = Db::connect(&url, &DatabaseSettings::default())
            .await
            .expect("SQLite file");
        let tx = db.begin_write().await.expect("begin");
        // About 4 MiB, 1,000 pages: past SQLite's own threshold, short of the writer's.
        tx.conn()
            .execute_unprepared(
                "CREATE TABLE t (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL \
                 SELECT i + 1 FROM n WHERE i < 4000) INSERT INTO t SELECT randomblob(1000) FROM n",
            )
            .await
            .expect("write");
        tx.commit().await.expect("commit");
        let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
        for _ in 0..100 {
            if size() > 4_000_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(size() > 4_000_000, "the file holds {} bytes", size());
        db.close().await.expect("close");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A sea-query statement runs on a direct connection with its values bound as sqlx
    /// binds them: an id written through the pool is found by it.
    #[tokio::test]
    async fn a_built_statement_reads_the_same_rows_directly() {
        use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
        let dir = std::env::temp_dir().join(format!("clientela-db-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", dir.join("built.db").display());
        let db = Db::connect(&url, &DatabaseSettings::default())
            .await
            .expect("SQLite file");
        let id = uuid::Uuid::now_v7();
        let tx = db.begin_write().await.expect("begin");
        tx.conn()
            .execute_unprepared("CREATE TABLE t (id BLOB, name TEXT, n INTEGER)")
            .await
            .expect("create");
        tx.conn()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t VALUES (?, ?, ?), (?, ?, ?)",
                [
                    id.into(),
                    "ana".into(),
                    1i64.into(),
                    uuid::Uuid::now_v7().into(),
                    "beto".into(),
                    2i64.into(),
                ],
            ))
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let select = Query::select()
            .column(Alias::new("name"))
            .from(Alias::new("t"))
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("n")).gt(0i32))
            .limit(5)
            .to_owned();
        let (sql, values) = sqlite_statement(&select).expect("bindable");
        let names = db.sqlite_read(|c| {
            let mut statement = c.prepare(&sql)?;
            statement
                .query_map(rusqlite::params_from_iter(values), |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        assert_eq!(names.map(Result::ok), Some(Some(vec!["ana".to_owned()])));
        let at = Query::select()
            .column(Alias::new("name"))
            .from(Alias::new("t"))
            .and_where(Expr::col(Alias::new("at")).eq(chrono::Utc::now()))
            .to_owned();
        assert!(sqlite_statement(&at).is_err(), "instants are refused");
        db.close().await.expect("close");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn advisory_keys_are_stable() {
        // Literal values: a key that changed between releases would let an old and a new
        // replica hold "the same" lock at once during a rolling update.
        assert_eq!(advisory_key("registry"), 700_711_320_968_335_047);
        assert_eq!(advisory_key("loyalty"), 708_748_391_917_706_600);
        assert_eq!(
            advisory_key("classification-feed"),
            8_205_321_577_005_328_488
        );
        assert_eq!(
            advisory_key("clientela-registry-migrations"),
            6_157_254_180_779_867_838
        );
    }
}
