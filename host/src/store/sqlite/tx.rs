//! Write transactions that never leave a connection in a bad state, and migrations that any
//! number of processes may run at once.
//!
//! A [`WriteTx`] is `BEGIN IMMEDIATE` on the process's one write connection
//! ([`super::writer::Writer`]), taken for its whole life; its statements run through rusqlite
//! on the task's own thread ([`super::conn`]). [`WriteTx::finish`] commits a body that
//! succeeded and rolls back one that failed; a transaction dropped half-way (its task was
//! cancelled) is rolled back as it drops. If a rollback itself fails (a full disk, an I/O
//! error), the connection is closed, which rolls back what it held, and the next writer opens
//! a fresh one, so every writer starts outside any transaction.
//!
//! Most transactions are durable (`synchronous=FULL`: fsync'd at commit). Queue bookkeeping
//! alone (claims, heartbeats, giving a claim back without a state change) is committed without
//! its own fsync ([`Durability::Relaxed`]): the next durable commit flushes it with its own, and
//! a power loss before that can only forget a claim, which leaves the object due as it was.

use super::super::conn::{Conn, Dialect, Each, Query, Transaction, query};
use super::super::{Access, Error, Result, schema};
use super::writer::{Taken, Writer, is_busy};
use crate::backoff::Backoff;
use futures_util::future::{self, BoxFuture};
use sqlx::migrate::Migrator;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// Whether a commit must reach the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// fsync'd at commit: every state change, every accepted command.
    Full,
    /// Written to the WAL, fsync'd with the next durable commit: queue bookkeeping only.
    Relaxed,
}

/// An open `BEGIN IMMEDIATE` transaction on the write connection.
pub(super) struct WriteTx {
    /// The write connection; `Some` until a failed rollback closes it.
    conn: Taken,
    open: bool,
    relaxed: bool,
}

impl WriteTx {
    /// Takes the write connection and begins, waiting up to `busy_timeout` for another
    /// process's write transaction to end.
    pub async fn begin(
        writer: &Writer,
        durability: Durability,
        busy_timeout: Duration,
    ) -> Result<Self> {
        let relaxed = durability == Durability::Relaxed;
        let tx = WriteTx {
            conn: writer.take().await?,
            // Until BEGIN is known to have worked: a failed switch of durability is undone by
            // closing the connection.
            open: true,
            relaxed,
        };
        let begin = match relaxed {
            true => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
            false => "BEGIN IMMEDIATE",
        };
        // Another process's write lock is waited for here, asleep, rather than in SQLite's
        // busy handler, which would hold this thread.
        tx.busy_timeout(Duration::ZERO)?;
        let started = Instant::now();
        let mut failures = 0;
        loop {
            match tx.execute_batch(begin) {
                Ok(()) => return Ok(tx),
                Err(error) if is_busy(&error) && started.elapsed() < busy_timeout => {
                    failures += 1;
                    tokio::time::sleep(LOCK_BUSY.delay(failures)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Commits if `result` is a success, rolls back otherwise; returns `result` (or the
    /// commit's error).
    pub async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        // A durable commit waits for the disk on this thread: handing it to a blocking thread
        // measured slower (two more thread wake-ups per commit) than the fsync itself.
        let ended = self.end(result.is_ok());
        super::super::conn::settle(result, ended)
    }

    /// Commits or rolls back, and goes back to full durability; on failure the transaction
    /// stays open, for `Drop` to roll back or close.
    fn end(&mut self, commit: bool) -> Result<()> {
        let end = match (commit, self.relaxed) {
            (true, false) => "COMMIT",
            (false, false) => "ROLLBACK",
            (true, true) => "COMMIT; PRAGMA synchronous = FULL",
            (false, true) => "ROLLBACK; PRAGMA synchronous = FULL",
        };
        self.execute_batch(end)?;
        self.open = false;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = rusqlite::Connection;

    fn deref(&self) -> &rusqlite::Connection {
        self.conn.as_ref().expect("the connection lives until drop")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut rusqlite::Connection {
        self.conn.as_mut().expect("the connection lives until drop")
    }
}

impl Conn for WriteTx {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Conn::execute(&mut **self, query)
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Conn::fetch(&mut **self, query, each)
    }
}

impl Transaction for WriteTx {
    fn end(mut self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<()>> {
        // A durable commit waits for the disk on this thread (see `finish`).
        Box::pin(future::ready(WriteTx::end(&mut self, commit)))
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // A transaction still open (a failed commit, a cancelled task) is rolled back; one that
        // cannot be is closed with its connection (closing rolls it back in SQLite), since a
        // connection left inside a transaction would fail every later BEGIN.
        let clean = !self.open || self.end(false).is_ok();
        if !clean {
            *self.conn = None;
        }
    }
}

/// The pauses while another process holds the database's write lock.
const LOCK_BUSY: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));

/// This build's migrations.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The migrations the database records (version, description), read without writing
/// anything; none for a new database. Databases made before `schema_migration` existed
/// recorded them in sqlx's table.
pub(super) async fn applied(reads: &mut dyn Conn) -> Result<Vec<(i64, String)>> {
    let tables = query(
        "SELECT name FROM sqlite_master
          WHERE type = 'table' AND name IN ('schema_migration', '_sqlx_migrations')",
    );
    let tables = reads.all(tables, |row| row.text("name")).await?;
    let has = |name: &str| tables.iter().any(|table| table == name);
    let recorded = if has("schema_migration") {
        "SELECT version, description FROM schema_migration"
    } else if has("_sqlx_migrations") {
        "SELECT version, description FROM _sqlx_migrations WHERE success"
    } else {
        return Ok(Vec::new());
    };
    recorded_in(reads, recorded).await
}

/// The (version, description) rows of `select`.
async fn recorded_in(c: &mut dyn Conn, select: &'static str) -> Result<Vec<(i64, String)>> {
    c.all(query(select), |row| {
        Ok((row.int("version")?, row.text("description")?))
    })
    .await
}

/// Applies the migrations not yet applied, in one `BEGIN IMMEDIATE` transaction: a second
/// process opening a new database at the same moment waits for the first and then finds the
/// schema in place. What the schema turns out to be once the lock is held is checked again
/// against `access` (`schema::must_migrate`): a newer one is refused, and so is an older one
/// that `access` may not upgrade.
pub(super) async fn migrate(
    writer: &Writer,
    now: i64,
    busy_timeout: Duration,
    access: Access,
) -> Result<()> {
    let mut tx = WriteTx::begin(writer, Durability::Full, busy_timeout).await?;
    let result = async {
        let create = query(
            "CREATE TABLE IF NOT EXISTS schema_migration (
                 version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        );
        tx.execute(create).await?;
        adopt_sqlx_history(&mut tx).await?;
        let recorded = "SELECT version, description FROM schema_migration";
        let applied = recorded_in(&mut tx, recorded).await?;
        if !schema::must_migrate(access, &applied, &MIGRATOR)? {
            return Ok(());
        }
        let applied: Vec<i64> = applied.into_iter().map(|(version, _)| version).collect();
        for migration in MIGRATOR.iter().filter(|m| !applied.contains(&m.version)) {
            tx.execute_batch(migration.sql.as_str()).map_err(|e| {
                Error::Corrupt(format!("migration {}: {e}", migration.description))
            })?;
            let record = query("INSERT INTO schema_migration VALUES (?1, ?2, ?3)")
                .bind(migration.version)
                .bind(migration.description.as_ref())
                .bind(now);
            tx.execute(record).await?;
        }
        Ok(())
    }
    .await;
    tx.finish(result).await
}

/// Databases made before `schema_migration` existed recorded their migrations in sqlx's table.
async fn adopt_sqlx_history(tx: &mut dyn Conn) -> Result<()> {
    let old =
        query("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations') AS old");
    if tx.one(old, |row| row.flag("old")).await? {
        let adopt = query(
            "INSERT OR IGNORE INTO schema_migration
             SELECT version, description, 0 FROM _sqlx_migrations WHERE success",
        );
        tx.execute(adopt).await?;
    }
    Ok(())
}
