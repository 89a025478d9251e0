//! Write transactions that never leave a connection in a bad state, and migrations that any
//! number of processes may run at once.
//!
//! A [`WriteTx`] is `BEGIN IMMEDIATE` on the one write connection. [`WriteTx::finish`] commits a
//! body that succeeded and rolls back one that failed; if the commit or the rollback itself
//! fails (a full disk, an I/O error), or the transaction is dropped half-way (its task was
//! cancelled), the connection is closed instead of being returned to the pool, so the next
//! writer always starts on a fresh connection outside any transaction.
//!
//! Most transactions are durable (`synchronous=FULL`: fsync'd at commit). Queue bookkeeping
//! alone (claims, heartbeats, giving a claim back without a state change) is committed without
//! its own fsync ([`Durability::Relaxed`]): the next durable commit flushes it with its own, and
//! a power loss before that can only forget a claim, which leaves the object due as it was.

use super::super::{Error, Result};
use sqlx::SqliteConnection;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqlitePool};
use std::ops::{Deref, DerefMut};

/// Whether a commit must reach the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// fsync'd at commit: every state change, every accepted command.
    Full,
    /// Written to the WAL, fsync'd with the next durable commit: queue bookkeeping only.
    Relaxed,
}

/// An open `BEGIN IMMEDIATE` transaction on a pooled connection.
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    open: bool,
    relaxed: bool,
}

impl WriteTx {
    /// Takes the write connection and begins.
    pub async fn begin(pool: &SqlitePool, durability: Durability) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        let relaxed = durability == Durability::Relaxed;
        // One hand-off to the connection's thread either way.
        let begin = match relaxed {
            true => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
            false => "BEGIN IMMEDIATE",
        };
        let begun = sqlx::raw_sql(begin).execute(&mut *conn).await;
        if let Err(error) = begun {
            conn.close_on_drop();
            return Err(error.into());
        }
        Ok(WriteTx {
            conn,
            open: true,
            relaxed,
        })
    }

    /// Commits if `result` is a success, rolls back otherwise; returns `result` (or the
    /// commit's error).
    pub async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        // Back to full durability in the same hand-off; a failed COMMIT or ROLLBACK stops
        // there, and the connection is closed below.
        let end = match (&result, self.relaxed) {
            (Ok(_), false) => "COMMIT",
            (Err(_), false) => "ROLLBACK",
            (Ok(_), true) => "COMMIT; PRAGMA synchronous = FULL",
            (Err(_), true) => "ROLLBACK; PRAGMA synchronous = FULL",
        };
        let ended = sqlx::raw_sql(end).execute(&mut *self.conn).await;
        // A connection that could not end its transaction, or go back to full durability, is
        // closed rather than reused.
        self.open = ended.is_err();
        match (result, ended) {
            (Ok(value), Ok(_)) => Ok(value),
            (Ok(_), Err(error)) => Err(error.into()),
            (Err(error), _) => Err(error),
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Closing the connection rolls the transaction back in SQLite; a pooled connection
            // left inside a transaction would fail every later BEGIN.
            self.conn.close_on_drop();
        }
    }
}

/// Applies the migrations not yet applied, in one `BEGIN IMMEDIATE` transaction: a second
/// process opening a new database at the same moment waits for the first and then finds the
/// schema in place. A database with a migration this build does not know is refused.
pub(super) async fn migrate(pool: &SqlitePool, now: i64) -> Result<()> {
    let migrator = sqlx::migrate!("./migrations/sqlite");
    let mut tx = WriteTx::begin(pool, Durability::Full).await?;
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migration (
                 version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        adopt_sqlx_history(&mut tx).await?;
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, description FROM schema_migration")
                .fetch_all(&mut *tx)
                .await?;
        super::super::schema::refuse_newer(&applied, &migrator)?;
        let applied: Vec<i64> = applied.into_iter().map(|(version, _)| version).collect();
        for migration in migrator.iter().filter(|m| !applied.contains(&m.version)) {
            sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::Corrupt(format!("migration {}: {e}", migration.description))
                })?;
            sqlx::query("INSERT INTO schema_migration VALUES (?1, ?2, ?3)")
                .bind(migration.version)
                .bind(migration.description.as_ref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
    .await;
    tx.finish(result).await
}

/// Databases made before `schema_migration` existed recorded their migrations in sqlx's table.
async fn adopt_sqlx_history(tx: &mut WriteTx) -> Result<()> {
    let old: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
    )
    .fetch_one(&mut **tx)
    .await?;
    if old {
        sqlx::query(
            "INSERT OR IGNORE INTO schema_migration
             SELECT version, description, 0 FROM _sqlx_migrations WHERE success",
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
