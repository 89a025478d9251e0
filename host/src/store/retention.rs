//! Pruning what finished long ago, for every backend: log entries, audit-trail steps, consumed
//! commands, destroyed
//! leases and resources (their work items go with them, by trigger).
//!
//! Each batch is its own short transaction, so pruning a large backlog never holds the write
//! lock for long. Queued commands and live objects are never touched; a destroyed resource goes
//! only once no lease row refers to it any more. The statements are the same text on SQLite
//! and PostgreSQL (`$1`, `$2`).

use super::{GcReport, Result};

/// Rows one transaction deletes at most.
const BATCH: i64 = 2000;

/// One pruning step: a statement binding `$1` (the cutoff) and `$2` (the batch size).
struct Step {
    delete: &'static str,
    count: fn(&mut GcReport) -> &mut u64,
}

const PRUNES: [Step; 5] = [
    Step {
        delete: "DELETE FROM log WHERE id IN
                   (SELECT id FROM log WHERE created_at < $1 LIMIT $2)",
        count: |r| &mut r.logs,
    },
    Step {
        delete: "DELETE FROM step WHERE id IN
                   (SELECT id FROM step WHERE created_at < $1 LIMIT $2)",
        count: |r| &mut r.steps,
    },
    Step {
        delete: "DELETE FROM command WHERE id IN
                   (SELECT id FROM command WHERE consumed_at < $1 LIMIT $2)",
        count: |r| &mut r.commands,
    },
    Step {
        delete: "DELETE FROM lease WHERE id IN
                   (SELECT id FROM lease WHERE status = 'destroyed' AND updated_at < $1 LIMIT $2)",
        count: |r| &mut r.leases,
    },
    Step {
        delete: "DELETE FROM resource WHERE id IN
                   (SELECT r.id FROM resource r
                     WHERE r.status = 'destroyed' AND r.updated_at < $1
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE resource_id = r.id)
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE parent_resource_id = r.id)
                       AND NOT EXISTS (SELECT 1 FROM lease WHERE acquiring = r.id)
                     LIMIT $2)",
        count: |r| &mut r.resources,
    },
];

/// A backend that runs one pruning statement in a transaction of its own.
#[async_trait::async_trait]
pub(crate) trait Prune: Sync {
    /// Runs `delete` (binding the cutoff and the batch size); the rows it deleted.
    async fn delete_batch(&self, delete: &'static str, before: i64, batch: i64) -> Result<u64>;
}

/// Prunes everything that finished before `before` (ms).
pub(crate) async fn gc(store: &dyn Prune, before: i64) -> Result<GcReport> {
    let mut report = GcReport::default();
    for prune in &PRUNES {
        loop {
            let deleted = store.delete_batch(prune.delete, before, BATCH).await?;
            *(prune.count)(&mut report) += deleted;
            if (deleted as i64) < BATCH {
                break;
            }
        }
    }
    Ok(report)
}
