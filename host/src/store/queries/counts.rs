//! The gauges read across tables: objects by type and status, recent failures, the queue,
//! and what each blueprint keeps.

use super::super::conn::{Conn, query};
use super::super::{Counts, Result};
use crate::domain::Timestamp;

/// The counts at `now`.
pub(crate) async fn counts(c: &mut dyn Conn, now: i64) -> Result<Counts> {
    // In the order of the (status, resource_type) index, which they scan.
    let by_status = |row: &dyn super::super::rows::Columns| {
        Ok((
            row.text("resource_type")?,
            row.text("status")?,
            row.int("n")?,
        ))
    };
    let leases = query(
        "SELECT resource_type, status, count(*) AS n FROM lease GROUP BY status, resource_type",
    );
    let leases = c.all(leases, by_status).await?;
    let resources = query(
        "SELECT resource_type, status, count(*) AS n FROM resource GROUP BY status, resource_type",
    );
    let resources = c.all(resources, by_status).await?;
    let leases_failed = broken_since(c, "lease", now).await?;
    let resources_failed = broken_since(c, "resource", now).await?;
    let due = query(
        "SELECT count(*) AS n, min(wake_at) AS oldest FROM work_item
          WHERE owner IS NULL AND wake_at IS NOT NULL AND wake_at <= $1",
    );
    let (due, oldest_due) = c
        .one(due.bind(now), |row| {
            Ok((row.int("n")?, row.opt_int("oldest")?))
        })
        .await?;
    let claimed = query("SELECT count(*) AS n FROM work_item WHERE owner IS NOT NULL");
    let claimed = c.one(claimed, |row| row.int("n")).await?;
    let kept = query("SELECT name, log_bytes, step_bytes FROM blueprint ORDER BY id");
    let kept = c
        .all(kept, |row| {
            Ok((
                row.text("name")?,
                row.int("log_bytes")?,
                row.int("step_bytes")?,
            ))
        })
        .await?;
    Ok(Counts {
        leases,
        resources,
        leases_failed,
        resources_failed,
        due,
        claimed,
        oldest_due: oldest_due.map(|t| t as Timestamp),
        kept,
    })
}

/// How many rows of `table` (`lease` or `resource`) broke in the hour and in the day before
/// `now`.
async fn broken_since(c: &mut dyn Conn, table: &str, now: i64) -> Result<(i64, i64)> {
    let broken = format!("SELECT count(*) FROM {table} WHERE end_kind = 'broken' AND ended_at >=");
    let select = query(format!(
        "SELECT ({broken} $1) AS hour, ({broken} $2) AS day"
    ));
    let select = select.bind(now - 3_600_000).bind(now - 86_400_000);
    c.one(select, |row| Ok((row.int("hour")?, row.int("day")?)))
        .await
}
