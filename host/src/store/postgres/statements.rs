//! PostgreSQL's [`Statements`](super::super::apply::Statements) where its SQL differs from
//! SQLite's (the rest are shared, `store::common`), and the guard. Transactions are READ COMMITTED; a decision that
//! reads another object locks what it reads (`FOR SHARE` to check, `FOR UPDATE` to change), so
//! what it read cannot change before the commit. Every wake-up also notifies the
//! `drydock_wake` channel; PostgreSQL delivers one notification per channel per transaction, at
//! commit.

use super::super::{Claim, ObjectId, Release, Result};
use sqlx::PgConnection;
use std::time::Duration;

/// The channel wake-ups are announced on (also named in the `wake` statement).
pub(super) const WAKE_CHANNEL: &str = "drydock_wake";

/// Statements on one PostgreSQL connection inside a transaction.
pub(super) struct PgStatements<'c>(pub &'c mut PgConnection);

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// The fencing guard that starts every worker write and every heartbeat: extends the claim
/// (from `claim_now`, the database's clock when `None`) if it is still held. Touching no row
/// means the claim was taken over: someone else may be the writer; nothing may be written. A
/// claim whose time ran out but that nobody took over is still held (a takeover moves the
/// token on): a stalled store is not a lost claim. The row stays locked until the transaction
/// ends, so no claim can take the object meanwhile.
pub(super) async fn guard(
    conn: &mut PgConnection,
    claim: &Claim,
    claim_now: Option<i64>,
    ttl: Duration,
) -> Result<()> {
    let held = sqlx::query(
        "WITH t AS (SELECT coalesce($1::BIGINT, drydock_now()) AS now)
         UPDATE work_item SET lease_until = t.now + $2 FROM t
          WHERE object = $3 AND owner = $4 AND token = $5",
    )
    .bind(claim_now)
    .bind(millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .execute(conn)
    .await?;
    super::super::apply::held_if_one(held.rows_affected(), claim)
}

/// The database's time.
pub(super) async fn db_now(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT drydock_now()")
        .fetch_one(conn)
        .await?)
}

super::super::common::impl_statements! {
    for_share = " FOR SHARE", for_update = " FOR UPDATE", query = sqlx;
    impl Statements for PgStatements<'_> {
        async fn wake(&mut self, object: ObjectId, at: i64) -> Result<()> {
            sqlx::query(
                "WITH woken AS (
                     INSERT INTO work_item (object, wake_at) VALUES ($1, $2)
                     ON CONFLICT (object) DO UPDATE
                        SET wake_at = LEAST(coalesce(work_item.wake_at, $2), $2)
                     RETURNING 1)
                 SELECT pg_notify('drydock_wake', '') FROM woken",
            )
            .bind(object.to_string())
            .bind(at)
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn lock_status(&mut self, resource: ObjectId) -> Result<Option<String>> {
            Ok(
                sqlx::query_scalar("SELECT status FROM resource WHERE id = $1 FOR UPDATE")
                    .bind(resource.number())
                    .fetch_optional(&mut *self.0)
                    .await?,
            )
        }

        async fn release_queued(&mut self, lease: ObjectId) -> Result<bool> {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM command
                                 WHERE target = $1 AND kind = 'release' AND consumed_at IS NULL)",
            )
            .bind(lease.to_string())
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn holders(&mut self, resource: ObjectId) -> Result<Vec<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT id FROM lease WHERE resource_id = $1 AND status <> 'destroyed' ORDER BY id",
            )
            .bind(resource.number())
            .fetch_all(&mut *self.0)
            .await?)
        }

        async fn capacity(&mut self, resource_type: &str) -> Result<i64> {
            // Locks the type's row, so that a change of capacity and a lease going to sleep on it
            // happen one after the other.
            Ok(sqlx::query_scalar(
                "INSERT INTO capacity (resource_type, generation) VALUES ($1, 0)
                 ON CONFLICT (resource_type) DO UPDATE SET generation = capacity.generation
                 RETURNING generation",
            )
            .bind(resource_type)
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn take_waiting(&mut self, resource_type: &str) -> Result<Vec<(i64, i64)>> {
            Ok(sqlx::query_as(
                "UPDATE lease SET waiting = FALSE WHERE waiting AND resource_type = $1
                 RETURNING id, created_at",
            )
            .bind(resource_type)
            .fetch_all(&mut *self.0)
            .await?)
        }

        async fn release_claim(&mut self, claim: &Claim, release: &Release) -> Result<u64> {
            let done = sqlx::query(
                "UPDATE work_item SET owner = NULL, lease_until = NULL,
                     wake_at = CASE WHEN wake_at IS NULL THEN $1
                                    WHEN $1::BIGINT IS NULL THEN wake_at
                                    ELSE LEAST(wake_at, $1) END,
                     attempts = CASE WHEN $2 THEN attempts + 1
                                     WHEN $3::TEXT IS NULL THEN 0 ELSE attempts END,
                     last_error = $3
                  WHERE object = $4 AND owner = $5 AND token = $6",
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
