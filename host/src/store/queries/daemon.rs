//! `daemon`: the daemons serving the database, each seen every few seconds while it runs.

use super::super::conn::{Conn, query};
use super::super::{DaemonRecord, Result};

/// Writes the daemon's row, or refreshes when it was seen.
pub(crate) async fn seen(c: &mut dyn Conn, daemon: &DaemonRecord) -> Result<()> {
    let upsert = query(
        "INSERT INTO daemon (name, version, started_at, seen_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET version = $2, started_at = $3, seen_at = $4",
    )
    .bind(&daemon.name)
    .bind(&daemon.version)
    .bind(daemon.started_at as i64)
    .bind(daemon.seen_at as i64);
    c.execute(upsert).await?;
    Ok(())
}

/// Removes a daemon's row.
pub(crate) async fn gone(c: &mut dyn Conn, name: &str) -> Result<()> {
    c.execute(query("DELETE FROM daemon WHERE name = $1").bind(name))
        .await?;
    Ok(())
}

/// Every daemon's row, the most recently seen first.
pub(crate) async fn list(c: &mut dyn Conn) -> Result<Vec<DaemonRecord>> {
    let select = query("SELECT * FROM daemon ORDER BY seen_at DESC, name");
    c.all(select, |row| {
        Ok(DaemonRecord {
            name: row.text("name")?,
            version: row.text("version")?,
            started_at: row.int("started_at")? as u64,
            seen_at: row.int("seen_at")? as u64,
        })
    })
    .await
}
