//! Pruning what finished long ago: log entries, consumed commands, destroyed leases and
//! resources (their work items go with them, by trigger).
//!
//! Each batch is its own short transaction, so pruning a large backlog never holds the write
//! lock for long. Queued commands and live objects are never touched; a destroyed resource goes
//! only once no lease row refers to it any more.

use super::super::{GcReport, Result};
use super::SqliteStore;

/// Rows one transaction deletes at most.
const BATCH: i64 = 2000;

/// One pruning step: a statement binding `?1` (the cutoff) and `?2` (the batch size).
struct Prune {
    delete: &'static str,
    count: fn(&mut GcReport) -> &mut u64,
}

const PRUNES: [Prune; 4] = [
    Prune {
        delete: "DELETE FROM log WHERE id IN
                   (SELECT id FROM log WHERE created_at < ?1 LIMIT ?2)",
        count: |r| &mut r.logs,
    },
    Prune {
        delete: "DELETE FROM command WHERE id IN
                   (SELECT id FROM command WHERE consumed_at < ?1 LIMIT ?2)",
        count: |r| &mut r.commands,
    },
    Prune {
        delete: "DELETE FROM lease WHERE id IN
                   (SELECT id FROM lease WHERE status = 'destroyed' AND updated_at < ?1 LIMIT ?2)",
        count: |r| &mut r.leases,
    },
    Prune {
        delete: "DELETE FROM resource WHERE id IN
                   (SELECT r.id FROM resource r
                     WHERE r.status = 'destroyed' AND r.updated_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE resource_id = r.id)
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE parent_resource_id = r.id)
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE acquiring = r.id)
                     LIMIT ?2)",
        count: |r| &mut r.resources,
    },
];

/// Prunes everything that finished before `before` (wall time, ms).
pub(super) async fn gc(store: &SqliteStore, before: i64) -> Result<GcReport> {
    let mut report = GcReport::default();
    for prune in &PRUNES {
        loop {
            let mut tx = store.begin().await?;
            let result = sqlx::query(prune.delete)
                .bind(before)
                .bind(BATCH)
                .execute(&mut *tx)
                .await
                .map_err(Into::into);
            let deleted = tx.finish(result).await?.rows_affected();
            *(prune.count)(&mut report) += deleted;
            if (deleted as i64) < BATCH {
                break;
            }
        }
    }
    Ok(report)
}
