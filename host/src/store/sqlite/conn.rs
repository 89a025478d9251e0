//! SQLite's [`Conn`]: a statement runs through rusqlite on the calling task's own thread, at
//! once, on a write transaction's connection or a read connection ([`Reading`]); the future
//! it returns is ready.
//!
//! sqlx ran each SQLite connection on a thread of its own and handed it every statement, and
//! every row back, over channels: two thread wake-ups per statement, which cost more than the
//! statements themselves. Parameters are numbered (`$1`, `?1`) and bound by their number.

use super::super::conn::{Arg, Conn, Dialect, Each, Query};
use super::super::rows::Columns;
use super::super::{Error, Result};
use super::readers::Readers;
use futures_util::future::{self, BoxFuture};
use rusqlite::types::{Null, ValueRef};
use rusqlite::{Connection, Statement, ToSql};
use std::sync::atomic::{AtomicU64, Ordering};

impl Conn for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Box::pin(future::ready(run(self, &query, &mut |_| Ok(()))))
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(future::ready(run(self, &query, each).map(drop)))
    }
}

/// The reads of one store: each statement takes a read connection and gives it back.
pub(super) struct Reading<'a> {
    /// The read connections.
    pub readers: &'a Readers,
    /// Read statements run so far (for benchmarks).
    pub reads: &'a AtomicU64,
}

impl Reading<'_> {
    fn run(&self, query: &Query, each: Each<'_>) -> Result<u64> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.readers.with(|conn| run(conn, query, each))
    }
}

impl Conn for Reading<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, query: Query) -> BoxFuture<'_, Result<u64>> {
        Box::pin(future::ready(self.run(&query, &mut |_| Ok(()))))
    }

    fn fetch<'a>(&'a mut self, query: Query, each: Each<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(future::ready(self.run(&query, each).map(drop)))
    }
}

/// Prepares (kept for the connection's next runs), binds, and steps through every row, handing
/// each to `each`; the rows the statement changed.
fn run(conn: &Connection, query: &Query, each: Each<'_>) -> Result<u64> {
    let mut stmt = conn.prepare_cached(&query.sql)?;
    bind(&mut stmt, &query.args)?;
    let changes = !stmt.readonly();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        each(&SqliteRow(row))?;
    }
    drop(rows);
    drop(stmt);
    // SQLite counts the last statement that changed rows; one that cannot changed none.
    Ok(if changes { conn.changes() } else { 0 })
}

/// Binds each parameter to the argument its number names (`$2` → the second); an unnumbered
/// `?` takes the next one.
fn bind(stmt: &mut Statement<'_>, args: &[Arg]) -> Result<()> {
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
        // An unbound parameter is NULL, as in SQLite.
        if let Some(arg) = number.checked_sub(1).and_then(|i| args.get(i)) {
            stmt.raw_bind_parameter(index, Value(arg))?;
        }
    }
    Ok(())
}

/// An argument as SQLite stores it (a boolean is an integer).
struct Value<'a>(&'a Arg);

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self.0 {
            Arg::Int(Some(value)) => value.to_sql(),
            Arg::Text(Some(value)) => value.to_sql(),
            Arg::Flag(Some(value)) => value.to_sql(),
            Arg::Bytes(Some(value)) => value.to_sql(),
            Arg::Int(None) | Arg::Text(None) | Arg::Flag(None) | Arg::Bytes(None) => Null.to_sql(),
        }
    }
}

/// A row being stepped through, read by column name.
struct SqliteRow<'r, 's>(&'r rusqlite::Row<'s>);

impl SqliteRow<'_, '_> {
    fn value(&self, column: &str) -> Result<ValueRef<'_>> {
        self.0.get_ref(column).map_err(|error| match error {
            rusqlite::Error::InvalidColumnName(_) => {
                Error::Corrupt(format!("no column {column:?} in the row"))
            }
            other => other.into(),
        })
    }

    fn mismatch(column: &str, wanted: &str, found: ValueRef<'_>) -> Error {
        Error::Corrupt(format!(
            "column {column:?}: expected {wanted}, found {:?}",
            found.data_type()
        ))
    }
}

impl Columns for SqliteRow<'_, '_> {
    fn int(&self, column: &str) -> Result<i64> {
        self.opt_int(column)?
            .ok_or_else(|| Self::mismatch(column, "an integer", ValueRef::Null))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        match self.value(column)? {
            ValueRef::Integer(i) => Ok(Some(i)),
            ValueRef::Null => Ok(None),
            other => Err(Self::mismatch(column, "an integer", other)),
        }
    }

    fn text(&self, column: &str) -> Result<String> {
        self.opt_text(column)?
            .ok_or_else(|| Self::mismatch(column, "text", ValueRef::Null))
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        match self.value(column)? {
            ValueRef::Text(text) => String::from_utf8(text.to_vec())
                .map(Some)
                .map_err(|_| Error::Corrupt(format!("column {column:?}: text is not UTF-8"))),
            ValueRef::Null => Ok(None),
            other => Err(Self::mismatch(column, "text", other)),
        }
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int(column)? != 0)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        match self.value(column)? {
            ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
            other => Err(Self::mismatch(column, "bytes", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::conn::query;
    use super::*;

    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
            .unwrap();
        conn
    }

    /// Runs a statement's future, which SQLite's connection returns ready.
    fn now<T>(future: impl Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(future).expect("SQLite statements never wait")
    }

    #[test]
    fn parameters_bind_by_their_number_wherever_they_appear() {
        let mut conn = connection();
        let conn: &mut dyn Conn = &mut conn;
        let select = query("SELECT $2 AS first, $1 AS second")
            .bind(7)
            .bind("seven");
        let (first, second) =
            now(conn.one(select, |row| Ok((row.text("first")?, row.int("second")?)))).unwrap();
        assert_eq!((first.as_str(), second), ("seven", 7));
        // Unnumbered ones take the arguments in order; a missing one is NULL.
        let select = query("SELECT ? AS a, ? AS b, ? AS missing")
            .bind("a")
            .bind(2);
        let missing = now(conn.one(select, |row| row.opt_int("missing"))).unwrap();
        assert_eq!(missing, None);
    }

    #[test]
    fn rows_are_read_by_name_and_changes_are_counted() {
        let mut conn = connection();
        let conn: &mut dyn Conn = &mut conn;
        for (name, n) in [("a", 1), ("b", 2)] {
            let insert = query("INSERT INTO t (name, n) VALUES ($1, $2)")
                .bind(name)
                .bind(n);
            assert_eq!(now(conn.execute(insert)).unwrap(), 1);
        }
        let select = query("SELECT * FROM t ORDER BY id");
        let rows = now(conn.all(select, |row| {
            Ok((row.text("name")?, row.int("n")?, row.flag("n")?))
        }))
        .unwrap();
        assert_eq!(
            rows,
            [(String::from("a"), 1, true), (String::from("b"), 2, true)]
        );
        assert_eq!(
            now(conn.execute(query("UPDATE t SET n = n + 1"))).unwrap(),
            2
        );
        let read = now(conn.execute(query("SELECT * FROM t"))).unwrap();
        assert_eq!(read, 0, "a read changes nothing");
    }

    #[test]
    fn a_wrong_column_or_type_is_named() {
        let mut conn = connection();
        let conn: &mut dyn Conn = &mut conn;
        let select = || query("SELECT 'text' AS word, NULL AS empty");
        let error = now(conn.one(select(), |row| row.int("word"))).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("\"word\"") && error.contains("integer"),
            "{error}"
        );
        let error = now(conn.one(select(), |row| row.text("empty"))).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("\"empty\"") && error.contains("text"),
            "{error}"
        );
        let error = now(conn.one(select(), |row| row.text("absent"))).unwrap_err();
        assert!(
            error.to_string().contains("no column \"absent\""),
            "{error}"
        );
        let none = now(conn.one(query("SELECT 1 AS n WHERE 0"), |row| row.int("n")));
        let error = none.unwrap_err().to_string();
        assert!(error.contains("returned none"), "{error}");
        let bad = now(conn.execute(query("SELECT * FROM missing_table")));
        assert!(bad.unwrap_err().to_string().contains("missing_table"));
    }

    #[test]
    fn typed_nulls_and_bytes_round_trip() {
        let mut conn = connection();
        let conn: &mut dyn Conn = &mut conn;
        let select = query("SELECT $1 AS i, $2 AS t, $3 AS f, $4 AS b, $5 AS yes")
            .bind(None::<i64>)
            .bind(None::<&str>)
            .bind(None::<bool>)
            .bind(&b"\x00\x01"[..])
            .bind(true);
        let row = now(conn.one(select, |row| {
            Ok((
                row.opt_int("i")?,
                row.opt_text("t")?,
                row.opt_int("f")?,
                row.bytes("b")?,
                row.flag("yes")?,
            ))
        }))
        .unwrap();
        assert_eq!(row, (None, None, None, vec![0, 1], true));
    }
}
