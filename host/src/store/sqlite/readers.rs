//! The read connections of a process: read-only rusqlite connections, each taken for one
//! statement (`store::sqlite::conn`) and given back, opened as they are first needed and
//! kept up to [`KEPT`] (WAL lets them read beside the writer, each from the last commit).
//!
//! A read-only connection creates nothing, takes no lock a writer could hold, and cannot write
//! by accident.

use super::super::Result;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Idle read connections kept for the next statements.
const KEPT: usize = 4;
/// Statements each read connection keeps prepared.
const PREPARED_STATEMENTS: usize = 64;

/// The read connections of one database file.
#[derive(Debug)]
pub(super) struct Readers {
    idle: Mutex<Vec<Connection>>,
    file: PathBuf,
    busy_timeout: Duration,
}

impl Readers {
    /// Read connections of `file`, waiting up to `busy_timeout` for a lock (while another
    /// process recovers the write-ahead log, say).
    pub fn new(file: PathBuf, busy_timeout: Duration) -> Self {
        Readers {
            idle: Mutex::default(),
            file,
            busy_timeout,
        }
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.file, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        Ok(conn)
    }

    /// Runs `f` on an idle read connection (or a new one), then keeps it for the next.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self
            .idle
            .lock()
            .expect("no statement panics holding the list")
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self
            .idle
            .lock()
            .expect("no statement panics holding the list");
        if idle.len() < KEPT {
            idle.push(conn);
        }
        result
    }
}
