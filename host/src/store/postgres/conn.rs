//! PostgreSQL's [`Conn`], through sqlx: on a transaction's connection, or on the pool for
//! reads ([`Pooled`]). Rows are read by name from sqlx's own rows.

use super::super::Result;
use super::super::conn::{Arg, Conn, Dialect, Each, Query};
use super::super::rows::Columns;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow, Postgres};
use sqlx::{AssertSqlSafe, Row};
use std::borrow::Cow;

impl Conn for PgConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { Ok(statement(query).execute(self).await?.rows_affected()) })
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { hand_over(statement(query).fetch_all(self).await?, each) })
    }
}

/// Reads on the pool: each statement takes a connection and gives it back.
pub(super) struct Pooled<'a>(pub &'a PgPool);

impl Conn for Pooled<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { Ok(statement(query).execute(self.0).await?.rows_affected()) })
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { hand_over(statement(query).fetch_all(self.0).await?, each) })
    }
}

/// sqlx's statement for `query`, its arguments bound in order.
fn statement(query: Query) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let mut statement = match query.sql {
        Cow::Borrowed(sql) => sqlx::query(sql),
        Cow::Owned(sql) => sqlx::query(AssertSqlSafe(sql)),
    }
    .persistent(query.prepared);
    for arg in query.args {
        statement = match arg {
            Arg::Int(value) => statement.bind(value),
            Arg::Text(value) => statement.bind(value),
            Arg::Flag(value) => statement.bind(value),
            Arg::Bytes(value) => statement.bind(value),
        };
    }
    statement
}

fn hand_over(rows: Vec<PgRow>, each: Each<'_>) -> Result<()> {
    rows.iter().try_for_each(|row| each(row))
}

impl Columns for PgRow {
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
}
