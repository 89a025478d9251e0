//! Pruning what finished long ago, for every backend: leases and resources destroyed before the
//! cutoff, each with its whole history (log entries, audit-trail steps, commands) and its work
//! item (by trigger).
//!
//! A blueprint's meters of log and step-history bytes kept (`crate::limits`) are given back
//! what each batch removes, in the batch's transaction, before the rows go.
//!
//! Retention goes object by object, never by the age of a history row alone: a live lease or
//! resource keeps all of its history however old, and so does every blueprint (its log is the
//! registration audit: who added, updated, granted, enabled or disabled it). A destroyed
//! resource goes only once no lease row refers to it any more. Each batch of objects, their
//! history and their rows is one short transaction, so pruning a large backlog never holds the
//! write lock for long; batches take the objects in id order along the `(status, id)` indexes
//! and find their history through the per-object indexes (`log_by_object`, `step_by_object`,
//! `command_by_target`). The statements are the same text on SQLite and PostgreSQL (`$1`,
//! `$2`).

use super::conn::{self, Conn, Transaction, query};
use super::{GcReport, Result};
use futures_util::future::BoxFuture;
use std::sync::LazyLock;

/// Objects one transaction removes at most, with their history.
const BATCH: i64 = 500;

/// One kind of object that retention removes, with its statements.
struct Finished {
    /// The highest id among the `$2` lowest-numbered removable objects that changed before the
    /// cutoff `$1`: the batch is every removable object that changed before the cutoff and is
    /// numbered no higher.
    bound: String,
    /// The deletes of one batch (binding the cutoff as `$1` and the bound as `$2`).
    deletes: Deletes,
    /// Where the report counts the objects.
    count: fn(&mut GcReport) -> &mut u64,
}

/// One batch's statements: the blueprints' meters given back the bytes of the log entries and
/// steps about to go, then the deletes of log entries, steps, commands and the objects
/// themselves.
type Deletes = [String; 6];
/// The rows each of a batch's statements changed, in their order.
type Deleted = [u64; 6];

impl Finished {
    /// The statements of one kind of object: its `table`, the letter its ids carry in history
    /// rows, the condition (on `table`'s row) under which a row may go once old enough, and the
    /// report's field that counts it. Batches go in id order, along the `(status, id)`
    /// indexes, so that no batch sorts the backlog.
    fn new(
        table: &str,
        letter: char,
        removable: &str,
        count: fn(&mut GcReport) -> &mut u64,
    ) -> Self {
        let in_batch = format!("{removable} AND updated_at < $1 AND {table}.id <= $2");
        // The ids the batch's history rows name.
        let ids = format!("(SELECT '{letter}' || {table}.id FROM {table} WHERE {in_batch})");
        let give_back = |meter: &str, history: &str, size: &str, charged: &str| {
            format!(
                "UPDATE blueprint SET {meter} = {meter} - coalesce((
                     SELECT sum(octet_length({history}.{size})) FROM {history}
                      WHERE {history}.{charged} = blueprint.id AND {history}.object IN {ids}
                 ), 0)
                 WHERE id IN (SELECT {history}.{charged} FROM {history}
                               WHERE {history}.object IN {ids})"
            )
        };
        Finished {
            bound: format!(
                "SELECT max(id) AS bound FROM (SELECT {table}.id FROM {table}
                  WHERE {removable} AND updated_at < $1 ORDER BY {table}.id LIMIT $2) AS batch"
            ),
            deletes: [
                give_back("log_bytes", "log", "message", "charged"),
                give_back("step_bytes", "step", "step", "blueprint_id"),
                format!("DELETE FROM log WHERE object IN {ids}"),
                format!("DELETE FROM step WHERE object IN {ids}"),
                format!("DELETE FROM command WHERE target IN {ids}"),
                format!("DELETE FROM {table} WHERE {in_batch}"),
            ],
            count,
        }
    }

    /// In one transaction's connection: reads the batch's bound and, when there is a batch,
    /// runs each delete; the rows each changed, or `None` when nothing is left to prune.
    async fn prune_batch(&'static self, c: &mut dyn Conn, before: i64) -> Result<Option<Deleted>> {
        let bound = query(self.bound.as_str()).bind(before).bind(BATCH);
        let Some(bound) = c.one(bound, |row| row.opt_int("bound")).await? else {
            return Ok(None);
        };
        let mut deleted = [0; 6];
        for (count, delete) in deleted.iter_mut().zip(&self.deletes) {
            // Planned for this batch's values each time (not prepared once): a generic plan
            // cannot know how few objects the bound leaves and may scan a history table.
            let delete = query(delete.as_str()).unprepared();
            *count = c.execute(delete.bind(before).bind(bound)).await?;
        }
        Ok(Some(deleted))
    }

    /// Adds what one batch's deletes removed (a count each, in their order) to `report`.
    fn count(&self, report: &mut GcReport, [_, _, logs, steps, commands, objects]: Deleted) {
        report.logs += logs;
        report.steps += steps;
        report.commands += commands;
        *(self.count)(report) += objects;
    }
}

/// Leases first, so that the resources they referred to can go in the same run. Built once:
/// the statements are `'static` text for the SQL libraries.
static FINISHED: LazyLock<[Finished; 2]> = LazyLock::new(|| {
    [
        Finished::new("lease", 'L', "lease.status = 'destroyed'", |r| {
            &mut r.leases
        }),
        Finished::new(
            "resource",
            'R',
            "resource.status = 'destroyed'
               AND NOT EXISTS (SELECT 1 FROM lease WHERE lease.resource_id = resource.id)
               AND NOT EXISTS (SELECT 1 FROM lease WHERE lease.parent_resource_id = resource.id)
               AND NOT EXISTS (SELECT 1 FROM lease WHERE lease.acquiring = resource.id)",
            |r| &mut r.resources,
        ),
    ]
});

/// Begins a durable write transaction (`conn::Backend::transaction`).
pub(crate) type Begin<'a> = &'a (dyn Fn() -> BoxFuture<'a, Result<Box<dyn Transaction>>> + Sync);

/// Removes the leases and resources destroyed before `before` (ms), with their history: a
/// transaction per batch, each begun with `begin`.
pub(crate) async fn gc(begin: Begin<'_>, before: i64) -> Result<GcReport> {
    let mut report = GcReport::default();
    for finished in FINISHED.iter() {
        loop {
            let mut tx = begin().await?;
            let batch = finished.prune_batch(&mut *tx, before).await;
            match conn::finish(tx, batch).await? {
                Some(deleted) => finished.count(&mut report, deleted),
                None => break,
            }
        }
    }
    Ok(report)
}
