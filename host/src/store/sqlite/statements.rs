//! SQLite's [`Statements`](super::super::apply::Statements) where its SQL differs from
//! PostgreSQL's (the rest are shared, `store::common`), and the guard: one statement each, on
//! the write transaction's connection, run on the calling thread (`super::direct`). SQLite
//! serialises write transactions, so a row read here cannot change before the commit; queries
//! name the partial index SQLite's planner would miss.

use super::super::{Claim, ClaimTime, ObjectId, Release, Result};
use super::direct;
use rusqlite::Connection;
use std::time::Duration;

/// Statements on one SQLite connection inside a transaction.
pub(super) struct SqliteStatements<'c>(pub &'c mut Connection);

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// The fencing guard that starts every worker write and every heartbeat: extends the claim
/// if it is still held. Touching no row means the claim was taken over (or is of an earlier
/// boot): someone else may be the writer; nothing may be written. A claim whose time ran out
/// but that nobody took over is still held (a takeover moves the token on): a stalled store is
/// not a lost claim.
pub(super) async fn guard(
    conn: &mut Connection,
    claim: &Claim,
    at: &ClaimTime,
    ttl: Duration,
) -> Result<()> {
    let held = direct::query(
        "UPDATE work_item SET lease_until = ?1
          WHERE object = ?2 AND owner = ?3 AND token = ?4 AND claim_boot = ?5",
    )
    .bind(at.ms + millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .bind(&at.boot)
    .execute(conn)
    .await?;
    super::super::apply::held_if_one(held.rows_affected(), claim)
}

super::super::common::impl_statements! {
    for_share = "", for_update = "", query = direct;
    impl Statements for SqliteStatements<'_> {
        async fn wake(&mut self, object: ObjectId, at: i64) -> Result<()> {
            direct::query(
                "INSERT INTO work_item (object, wake_at) VALUES (?1, ?2)
                 ON CONFLICT (object) DO UPDATE SET wake_at =
                     CASE WHEN wake_at IS NULL OR wake_at > ?2 THEN ?2 ELSE wake_at END",
            )
            .bind(object.to_string())
            .bind(at)
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn lock_status(&mut self, resource: ObjectId) -> Result<Option<String>> {
            Ok(self.status_of(resource).await?.map(|(status, _)| status))
        }

        async fn release_queued(&mut self, lease: ObjectId) -> Result<bool> {
            Ok(direct::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM command INDEXED BY command_pending
                                 WHERE target = ?1 AND kind = 'release' AND consumed_at IS NULL)",
            )
            .bind(lease.to_string())
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn holders(&mut self, resource: ObjectId) -> Result<Vec<i64>> {
            Ok(direct::query_scalar(
                "SELECT id FROM lease INDEXED BY lease_live_on_resource
                  WHERE resource_id = ?1 AND status != 'destroyed' ORDER BY id",
            )
            .bind(resource.number())
            .fetch_all(&mut *self.0)
            .await?)
        }

        async fn capacity(&mut self, resource_type: &str) -> Result<i64> {
            Ok(direct::query_scalar(
                "SELECT coalesce((SELECT generation FROM capacity WHERE resource_type = ?1), 0)",
            )
            .bind(resource_type)
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn take_waiting(&mut self, resource_type: &str) -> Result<Vec<(i64, i64)>> {
            Ok(direct::query_as(
                "UPDATE lease SET waiting = 0 WHERE waiting = 1 AND resource_type = ?1
                 RETURNING id, created_at",
            )
            .bind(resource_type)
            .fetch_all(&mut *self.0)
            .await?)
        }

        async fn release_claim(&mut self, claim: &Claim, release: &Release) -> Result<u64> {
            let done = direct::query(
                "UPDATE work_item SET owner = NULL, lease_until = NULL, claim_boot = NULL,
                     wake_at = CASE WHEN wake_at IS NULL THEN ?1
                                    WHEN ?1 IS NULL THEN wake_at
                                    ELSE min(wake_at, ?1) END,
                     attempts = CASE WHEN ?2 THEN attempts + 1 WHEN ?3 IS NULL THEN 0 ELSE attempts END,
                     last_error = ?3
                  WHERE object = ?4 AND owner = ?5 AND token = ?6",
            )
            .bind(release.wake_at.map(|t| t as i64))
            .bind(release.failed)
            .bind(&release.error)
            .bind(claim.object.to_string())
            .bind(&claim.owner)
            .bind(claim.token)
            .execute(&mut *self.0)
            .await?;
            Ok(done.rows_affected())
        }
    }
}
