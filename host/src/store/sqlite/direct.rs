//! Statements of SQLite, run through rusqlite on the calling task's own thread: a write
//! transaction's, and reads.
//!
//! sqlx ran each SQLite connection on a thread of its own and handed it every statement, and
//! every row back, over channels: two thread wake-ups per statement, which cost more than the
//! statements themselves. Here a statement runs where it is called, on the connection its
//! [`Runner`] gives: a write transaction's ([`super::tx::WriteTx`]) or a read connection
//! ([`super::readers::Readers`]).
//!
//! [`query`], [`query_scalar`] and [`query_as`] are shaped like sqlx's, so that the statements
//! shared with PostgreSQL (`store::common`) are written once for both. Parameters are numbered
//! (`$1`, `?1`) and bound by their number, as sqlx does.

use super::super::rows::Columns;
use super::super::{Error, Result};
use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value};
use rusqlite::{Connection, Statement};
use std::marker::PhantomData;
use std::sync::Arc;

/// A statement and its parameters, run by [`Query::execute`] or one of the fetches.
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
    bad_arg: Option<rusqlite::Error>,
}

/// A statement whose rows are one value each ([`query_scalar`]).
pub(crate) struct Scalar<'q, T> {
    query: Query<'q>,
    value: PhantomData<fn() -> T>,
}

/// A statement whose rows are tuples ([`query_as`]).
pub(crate) struct As<'q, T> {
    query: Query<'q>,
    row: PhantomData<fn() -> T>,
}

/// What a statement run for its effect did.
pub(crate) struct Done {
    rows: u64,
}

impl Done {
    /// Rows the statement inserted, changed or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// A row read by name, its values owned.
#[derive(Debug)]
pub(crate) struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

/// Where a statement runs: the connection of a write transaction, or a read connection taken
/// for the statement (`store::sqlite::readers`).
pub(crate) trait Runner {
    /// Runs `f` on the connection.
    fn run<T>(self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T>;
}

impl Runner for &mut Connection {
    fn run<T>(self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(self)
    }
}

/// A statement returning rows read by column name.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
        bad_arg: None,
    }
}

/// A statement whose rows are their first column.
pub(crate) fn query_scalar<T>(sql: &str) -> Scalar<'_, T> {
    Scalar {
        query: query(sql),
        value: PhantomData,
    }
}

/// A statement whose rows are tuples of their columns.
pub(crate) fn query_as<T>(sql: &str) -> As<'_, T> {
    As {
        query: query(sql),
        row: PhantomData,
    }
}

impl<'q> Query<'q> {
    /// Adds the next parameter (`$n` for the n-th call).
    pub fn bind<T: ToSql>(mut self, value: T) -> Self {
        match value.to_sql().and_then(owned) {
            Ok(value) => self.args.push(value),
            Err(error) => self.bad_arg = Some(error),
        }
        self
    }

    /// Runs the statement for its effect.
    pub async fn execute(self, on: impl Runner) -> Result<Done> {
        let (_, rows) = self.run(on, |_| Ok(()))?;
        Ok(Done { rows })
    }

    /// Runs the statement; its one row.
    pub async fn fetch_one(self, on: impl Runner) -> Result<Row> {
        one(self.fetch_optional(on).await?)
    }

    /// Runs the statement; its first row, if any.
    pub async fn fetch_optional(self, on: impl Runner) -> Result<Option<Row>> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// Runs the statement; all its rows.
    pub async fn fetch_all(self, on: impl Runner) -> Result<Vec<Row>> {
        let mut names: Option<Arc<[String]>> = None;
        self.run(on, |row| {
            let names = names
                .get_or_insert_with(|| {
                    let statement: &Statement<'_> = row.as_ref();
                    statement
                        .column_names()
                        .into_iter()
                        .map(String::from)
                        .collect()
                })
                .clone();
            let values = (0..names.len())
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<_>>()?;
            Ok(Row { names, values })
        })
        .map(|(rows, _)| rows)
    }

    /// Prepares (cached for the transaction), binds, and steps through every row, converting
    /// each with `each`; the rows, and the rows the statement changed.
    fn run<T>(
        self,
        on: impl Runner,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(Vec<T>, u64)> {
        if let Some(error) = self.bad_arg {
            return Err(error.into());
        }
        on.run(|conn| {
            let mut stmt = conn.prepare_cached(self.sql)?;
            bind(&mut stmt, &self.args)?;
            let changes = !stmt.readonly();
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(each(row)?);
            }
            drop(rows);
            drop(stmt);
            // SQLite counts the last statement that changed rows; one that cannot changed none.
            Ok((out, if changes { conn.changes() } else { 0 }))
        })
    }
}

impl<'q, T: FromSql> Scalar<'q, T> {
    /// Adds the next parameter.
    pub fn bind<A: ToSql>(mut self, value: A) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Runs the statement; its one value.
    pub async fn fetch_one(self, on: impl Runner) -> Result<T> {
        one(self.fetch_optional(on).await?)
    }

    /// Runs the statement; its first value, if it returned a row.
    pub async fn fetch_optional(self, on: impl Runner) -> Result<Option<T>> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// Runs the statement; every row's value.
    pub async fn fetch_all(self, on: impl Runner) -> Result<Vec<T>> {
        Ok(self.query.run(on, |row| row.get(0))?.0)
    }
}

impl<'q, T: FromColumns> As<'q, T> {
    /// Adds the next parameter.
    pub fn bind<A: ToSql>(mut self, value: A) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Runs the statement; its first row, which must be there.
    pub async fn fetch_one(self, on: impl Runner) -> Result<T> {
        one(self.fetch_optional(on).await?)
    }

    /// Runs the statement; its first row, if any.
    pub async fn fetch_optional(self, on: impl Runner) -> Result<Option<T>> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// Runs the statement; all its rows.
    pub async fn fetch_all(self, on: impl Runner) -> Result<Vec<T>> {
        Ok(self.query.run(on, T::from_columns)?.0)
    }
}

/// Tuples a row converts to ([`query_as`]).
pub(crate) trait FromColumns: Sized {
    /// The row's first columns as the tuple.
    fn from_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl<A: FromSql, B: FromSql> FromColumns for (A, B) {
    fn from_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?, row.get(1)?))
    }
}

impl<A: FromSql, B: FromSql, C: FromSql> FromColumns for (A, B, C) {
    fn from_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    }
}

/// Binds each parameter to the argument its number names (`$2` → the second); an unnumbered
/// `?` takes the next one.
fn bind(stmt: &mut Statement<'_>, args: &[Value]) -> Result<()> {
    let mut next = 0;
    for index in 1..=stmt.parameter_count() {
        let number = match stmt.parameter_name(index) {
            Some(name) => name[1..]
                .parse::<usize>()
                .map_err(|_| Error::Corrupt(format!("parameter {name} is not numbered")))?,
            None => {
                next += 1;
                next
            }
        };
        // An unbound parameter is NULL, as in SQLite (and sqlx).
        if let Some(value) = number.checked_sub(1).and_then(|i| args.get(i)) {
            stmt.raw_bind_parameter(index, value)?;
        }
    }
    Ok(())
}

/// A parameter's value, owned (the statement runs after the borrowed value may be gone).
fn owned(output: ToSqlOutput<'_>) -> rusqlite::Result<Value> {
    match output {
        ToSqlOutput::Borrowed(value) => Value::try_from(value)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error))),
        ToSqlOutput::Owned(value) => Ok(value),
        // Zero-blobs, function arguments and pointers are features this store does not enable.
        _ => unreachable!("a parameter kind the store never binds"),
    }
}

/// The one row a statement must return.
fn one<T>(row: Option<T>) -> Result<T> {
    row.ok_or(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

impl Row {
    fn value(&self, column: &str) -> Result<&Value> {
        self.names
            .iter()
            .position(|name| name == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| Error::Corrupt(format!("no column {column:?} in the row")))
    }

    fn mismatch(column: &str, wanted: &str, found: &Value) -> Error {
        Error::Corrupt(format!(
            "column {column:?}: expected {wanted}, found {:?}",
            found.data_type()
        ))
    }
}

impl Columns for Row {
    fn int(&self, column: &str) -> Result<i64> {
        self.opt_int(column)?
            .ok_or_else(|| Row::mismatch(column, "an integer", &Value::Null))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        match self.value(column)? {
            Value::Integer(i) => Ok(Some(*i)),
            Value::Null => Ok(None),
            other => Err(Row::mismatch(column, "an integer", other)),
        }
    }

    fn text(&self, column: &str) -> Result<String> {
        self.opt_text(column)?
            .ok_or_else(|| Row::mismatch(column, "text", &Value::Null))
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        match self.value(column)? {
            Value::Text(text) => Ok(Some(text.clone())),
            Value::Null => Ok(None),
            other => Err(Row::mismatch(column, "text", other)),
        }
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int(column)? != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
            .unwrap();
        conn
    }

    /// Runs a future that never waits (the statements here run on the calling thread).
    fn now<T>(future: impl Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(future).expect("direct statements never wait")
    }

    #[test]
    fn parameters_bind_by_their_number_wherever_they_appear() {
        let mut conn = connection();
        let (first, second): (String, i64) = now(query_as::<(String, i64)>("SELECT $2, $1")
            .bind(7)
            .bind("seven")
            .fetch_optional(&mut conn))
        .unwrap()
        .unwrap();
        assert_eq!((first.as_str(), second), ("seven", 7));
        // Unnumbered ones take the arguments in order; a missing one is NULL.
        let row = now(query("SELECT ?, ?, ? AS missing")
            .bind("a")
            .bind(2)
            .fetch_one(&mut conn))
        .unwrap();
        assert_eq!(row.opt_int("missing").unwrap(), None);
    }

    #[test]
    fn rows_are_read_by_name_and_changes_are_counted() {
        let mut conn = connection();
        for (name, n) in [("a", 1), ("b", 2)] {
            let done = now(query("INSERT INTO t (name, n) VALUES ($1, $2)")
                .bind(name)
                .bind(n)
                .execute(&mut conn))
            .unwrap();
            assert_eq!(done.rows_affected(), 1);
        }
        let rows = now(query("SELECT * FROM t ORDER BY id").fetch_all(&mut conn)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].text("name").unwrap(), "b");
        assert_eq!(rows[1].int("n").unwrap(), 2);
        assert!(rows[1].flag("n").unwrap());
        let changed = now(query("UPDATE t SET n = n + 1").execute(&mut conn)).unwrap();
        assert_eq!(changed.rows_affected(), 2);
        let read = now(query("SELECT * FROM t").execute(&mut conn)).unwrap();
        assert_eq!(read.rows_affected(), 0, "a read changes nothing");
        let names: Vec<String> =
            now(query_scalar("SELECT name FROM t ORDER BY id").fetch_all(&mut conn)).unwrap();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_wrong_column_or_type_is_named() {
        let mut conn = connection();
        let row = now(query("SELECT 'text' AS word, NULL AS empty").fetch_one(&mut conn)).unwrap();
        let error = row.int("word").unwrap_err().to_string();
        assert!(
            error.contains("\"word\"") && error.contains("integer"),
            "{error}"
        );
        let error = row.text("empty").unwrap_err().to_string();
        assert!(
            error.contains("\"empty\"") && error.contains("text"),
            "{error}"
        );
        let error = row.text("absent").unwrap_err().to_string();
        assert!(error.contains("no column \"absent\""), "{error}");
        let none = now(query("SELECT 1 WHERE 0").fetch_one(&mut conn));
        assert!(
            matches!(none, Err(Error::Sqlite(_))),
            "one row was required"
        );
        let bad = now(query("SELECT * FROM missing_table").fetch_all(&mut conn));
        assert!(bad.unwrap_err().to_string().contains("missing_table"));
    }
}
