//! PostgreSQL write transactions that never leave a connection in a bad state.
//!
//! A [`PgTx`] is `BEGIN` (READ COMMITTED: the statements lock the rows their decisions read)
//! on a pooled connection. [`PgTx::finish`] commits a body that succeeded and rolls back one
//! that failed; if the commit or the rollback fails (the server went away, the connection was
//! terminated) or the transaction is dropped half-way, the connection is closed instead of going
//! back to the pool. The server rolls back whatever the connection had not committed, so a lost
//! connection is a retry, never a partial write.
//!
//! Queue bookkeeping alone (claims, heartbeats, claim releases) commits with
//! `synchronous_commit = off`: it is flushed with the next durable commit, and a crash of the
//! server before that can only forget a claim.

use super::super::Result;
use super::super::conn::{Conn, Dialect, Each, Query, Transaction};
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use std::ops::{Deref, DerefMut};

/// Whether a commit must be flushed to the server's disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Flushed at commit: every state change, every accepted command.
    Full,
    /// Flushed with the next durable commit: queue bookkeeping only.
    Relaxed,
}

/// An open transaction on a pooled connection.
pub(super) struct PgTx {
    conn: PoolConnection<Postgres>,
    open: bool,
}

impl PgTx {
    /// Takes a connection and begins.
    pub async fn begin(pool: &PgPool, durability: Durability) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        // One round trip either way (the simple query protocol runs both statements).
        let begin = match durability {
            Durability::Full => "BEGIN",
            Durability::Relaxed => "BEGIN; SET LOCAL synchronous_commit = off",
        };
        let begun = sqlx::raw_sql(begin).execute(&mut *conn).await;
        if let Err(error) = begun {
            conn.close_on_drop();
            return Err(error.into());
        }
        Ok(PgTx { conn, open: true })
    }

    /// Commits if `result` is a success, rolls back otherwise; returns `result` (or the
    /// commit's error).
    pub async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let ended = self.end(result.is_ok()).await;
        super::super::conn::settle(result, ended)
    }

    /// Commits or rolls back; a connection where that failed is closed when the transaction
    /// drops.
    async fn end(&mut self, commit: bool) -> Result<()> {
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *self.conn).await;
        self.open = ended.is_err();
        ended?;
        Ok(())
    }
}

impl Deref for PgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Conn for PgTx {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Conn::execute(&mut **self, query)
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Conn::fetch(&mut **self, query, each)
    }
}

impl Transaction for PgTx {
    fn end(mut self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { PgTx::end(&mut self, commit).await })
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}
