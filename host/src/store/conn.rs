//! The small connection trait the store's SQL is written against: [`Conn`] runs one
//! [`Query`] (SQL text and its arguments) and hands its rows over as [`Columns`], on SQLite
//! (rusqlite) or PostgreSQL (sqlx) alike.
//!
//! The statements themselves are plain functions, one module per table (`store::queries`).
//! Both backends take `$1`-style parameters, `ON CONFLICT … DO NOTHING`, `RETURNING`, `CAST`
//! and `coalesce`, so most statements are one text for both; where they differ, a statement
//! asks the connection's [`Dialect`] and the two variants stand side by side.
//!
//! A backend gives the store its reads and its write transactions through [`Backend`], the
//! sealed supertrait of [`Store`](super::Store), whose shared methods are written once over it.

use super::rows::Columns;
use super::{Error, Result};
use futures_util::future::BoxFuture;
use std::borrow::Cow;

/// Which SQL a connection speaks, for the few statements whose text differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: write transactions are serialised, so a read inside one needs no row lock.
    Sqlite,
    /// PostgreSQL: READ COMMITTED, so a decision locks the rows it reads.
    Postgres,
}

impl Dialect {
    /// The variant of a statement written in this dialect.
    pub fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

/// A value bound to a statement's parameter. A NULL keeps its type: PostgreSQL infers a
/// parameter's type from what is bound to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A 64-bit integer.
    Int(Option<i64>),
    /// Text.
    Text(Option<String>),
    /// A boolean.
    Flag(Option<bool>),
    /// Bytes.
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(Some(value.to_string()))
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Self {
        Arg::Text(Some(value.clone()))
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(Some(value))
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Arg::Text(value.map(str::to_string))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::Text(value)
    }
}

impl From<&Option<String>> for Arg {
    fn from(value: &Option<String>) -> Self {
        Arg::Text(value.clone())
    }
}

impl From<bool> for Arg {
    fn from(value: bool) -> Self {
        Arg::Flag(Some(value))
    }
}

impl From<Option<bool>> for Arg {
    fn from(value: Option<bool>) -> Self {
        Arg::Flag(value)
    }
}

impl From<&[u8]> for Arg {
    fn from(value: &[u8]) -> Self {
        Arg::Bytes(Some(value.to_vec()))
    }
}

/// A statement and its arguments: `query(SQL).bind(a).bind(b)` binds `$1` and `$2`.
#[derive(Debug, Clone)]
pub struct Query {
    /// The SQL text: static for a fixed statement, owned for one made at run time.
    pub sql: Cow<'static, str>,
    /// The arguments, `$1` first.
    pub args: Vec<Arg>,
    /// Whether the backend may keep the statement prepared for its next run.
    pub prepared: bool,
}

/// A statement with no arguments yet.
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
        prepared: true,
    }
}

impl Query {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Plans the statement for these arguments at every run rather than keeping one plan for
    /// all (PostgreSQL; SQLite plans for the arguments anyway).
    pub fn unprepared(mut self) -> Self {
        self.prepared = false;
        self
    }
}

/// What receives each row of a statement, in order.
pub type Each<'a> = &'a mut (dyn FnMut(&dyn Columns) -> Result<()> + Send);

/// A connection statements run on: a write transaction's, or a backend's reads.
pub trait Conn: Send {
    /// The SQL it speaks.
    fn dialect(&self) -> Dialect;
    /// Runs a statement for its effect; the rows it inserted, changed or deleted.
    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>>;
    /// Runs a statement, handing every row it returns to `each`.
    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>>;
}

impl dyn Conn + '_ {
    /// Every row of `query`, each converted by `row`.
    pub async fn all<T: Send>(
        &mut self,
        query: Query,
        mut row: impl FnMut(&dyn Columns) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        self.fetch(query, &mut |columns| {
            rows.push(row(columns)?);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// The first row of `query` converted by `row`, if it returned one.
    pub async fn optional<T: Send>(
        &mut self,
        query: Query,
        row: impl FnMut(&dyn Columns) -> Result<T> + Send,
    ) -> Result<Option<T>> {
        Ok(self.all(query, row).await?.into_iter().next())
    }

    /// The row `query` must return, converted by `row`.
    pub async fn one<T: Send>(
        &mut self,
        query: Query,
        row: impl FnMut(&dyn Columns) -> Result<T> + Send,
    ) -> Result<T> {
        let sql = query.sql.clone();
        self.optional(query, row).await?.ok_or_else(|| {
            Error::Corrupt(format!(
                "a statement that always returns a row returned none: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })
    }
}

/// An open write transaction: a [`Conn`] that ends with [`finish`].
pub trait Transaction: Conn {
    /// Commits (`true`) or rolls back; on failure the connection is closed rather than
    /// reused, so no later transaction starts inside this one.
    fn end(self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<()>>;
}

/// Commits `tx` if `result` is a success, rolls it back otherwise; returns `result` (or the
/// commit's error).
pub async fn finish<T>(tx: Box<dyn Transaction>, result: Result<T>) -> Result<T> {
    let ended = tx.end(result.is_ok()).await;
    settle(result, ended)
}

/// A transaction's outcome: its body's `result`, unless the body succeeded and the commit
/// (`ended`) failed; a failed body's error wins over its rollback's.
pub fn settle<T>(result: Result<T>, ended: Result<()>) -> Result<T> {
    match (result, ended) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(error)) => Err(error),
        (Err(error), _) => Err(error),
    }
}

/// Where the store's shared methods run: a backend's reads and durable write transactions.
/// Public only as the sealed supertrait of [`Store`](super::Store): nothing outside the store
/// can name it.
pub trait Backend {
    /// Where reads run (each statement may take a connection of its own).
    fn reader(&self) -> Box<dyn Conn + '_>;
    /// Begins a durable write transaction.
    fn transaction(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>>;
    /// Tells other processes that something became due, after a commit that made it so.
    fn announce(&self);
}
