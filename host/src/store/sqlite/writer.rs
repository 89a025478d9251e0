//! The one write connection of a process: a rusqlite connection of its own, which writers
//! take in turn (tokio's mutex queues them first come, first served) and whose statements run
//! on the writer's own thread (`store::sqlite::conn`), its prepared statements kept from one
//! transaction to the next.
//!
//! It is opened when first needed (a CLI that only reads never opens it), and opened again
//! after a transaction that could not be rolled back: closing a connection rolls back what it
//! held, so the next writer always starts outside any transaction.

use super::super::{Error, Result};
use crate::backoff::Backoff;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Statements the connection keeps prepared: every statement the store writes with, and room.
const PREPARED_STATEMENTS: usize = 256;

/// The pauses while another process sets the same new database file up.
const FILE_BUSY: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));

/// What the write connection may do to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Only read: writes through it fail (a CLI that only reads).
    ReadOnly,
    /// Read and write an existing file.
    ReadWrite,
    /// Read and write, creating the file if it is missing.
    Create,
}

/// The write connection, opened when first taken.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    conn: Arc<Mutex<Option<Connection>>>,
    file: PathBuf,
    mode: Mode,
    busy_timeout: Duration,
}

/// The write connection, taken: no other writer of this process has it until it is dropped.
pub(super) type Taken = OwnedMutexGuard<Option<Connection>>;

impl Writer {
    /// The write connection of `file`, opened in `mode` when first taken; another process's
    /// lock on a file being set up is waited for up to `busy_timeout`.
    pub fn new(file: PathBuf, mode: Mode, busy_timeout: Duration) -> Self {
        Writer {
            conn: Arc::default(),
            file,
            mode,
            busy_timeout,
        }
    }

    /// Takes the connection once the writers before have given it back; opens it if it is
    /// not open (the first time, or after a transaction that could not be rolled back).
    pub async fn take(&self) -> Result<Taken> {
        let mut taken = self.conn.clone().lock_owned().await;
        if taken.as_ref().is_some_and(|conn| !conn.is_autocommit()) {
            // Still inside a transaction: closing the connection rolls it back.
            *taken = None;
        }
        if taken.is_none() {
            let (file, mode, patience) = (self.file.clone(), self.mode, self.busy_timeout);
            let opened = tokio::task::spawn_blocking(move || open(&file, mode, patience))
                .await
                .map_err(|e| Error::Corrupt(format!("opening the write connection: {e}")))??;
            *taken = Some(opened);
        }
        Ok(taken)
    }
}

/// Opens `file` for `mode`: foreign keys enforced, every commit fsync'd, the write-ahead log
/// (switched to when the file is new). Another process setting the same new file up at the
/// same moment makes the switch busy: it is tried again, up to `patience`.
fn open(file: &std::path::Path, mode: Mode, patience: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
        | match mode {
            Mode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Mode::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
            Mode::Create => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        };
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match try_open(file, flags, mode) {
            Err(error) if is_busy(&error) && started.elapsed() < patience => {
                failures += 1;
                std::thread::sleep(FILE_BUSY.delay(failures));
            }
            result => return Ok(result?),
        }
    }
}

fn try_open(file: &std::path::Path, flags: OpenFlags, mode: Mode) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(file, flags)?;
    conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if mode != Mode::ReadOnly {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    }
    Ok(conn)
}

/// SQLITE_BUSY: another connection holds the lock.
pub(super) fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}
