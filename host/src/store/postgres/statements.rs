//! PostgreSQL's [`Statements`], and the guard. Transactions are READ COMMITTED; a decision that
//! reads another object locks what it reads (`FOR SHARE` to check, `FOR UPDATE` to change), so
//! what it read cannot change before the commit. Every wake-up also notifies the
//! `drydock_wake` channel; PostgreSQL delivers one notification per channel per transaction, at
//! commit.

use super::super::apply::Statements;
use super::super::rows::{self, kind_text};
use super::super::{Claim, Command, CommandKind, Error, ObjectId, Release, Result};
use sqlx::PgConnection;
use std::time::Duration;

/// The channel wake-ups are announced on (also named in the `wake` statement).
pub(super) const WAKE_CHANNEL: &str = "drydock_wake";

/// Statements on one PostgreSQL connection inside a transaction.
pub(super) struct PgStatements<'c>(pub &'c mut PgConnection);

/// One of two statements, by the object's table (statements are static text).
fn by_table(object: ObjectId, resource: &'static str, lease: &'static str) -> Result<&'static str> {
    match object {
        ObjectId::Resource(_) => Ok(resource),
        ObjectId::Lease(_) => Ok(lease),
        ObjectId::Blueprint(_) => Err(Error::NotFound(format!(
            "{object} is not a lease or resource"
        ))),
    }
}

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// The fencing guard that starts every worker write: extends the claim only if it is still held
/// and unexpired at `claim_now` (the database's clock when `None`). Touching no row means
/// someone else may be the writer; nothing may be written. The row stays locked until the
/// transaction ends, so no claim can take the object meanwhile.
pub(super) async fn guard(
    conn: &mut PgConnection,
    claim: &Claim,
    claim_now: Option<i64>,
    ttl: Duration,
) -> Result<()> {
    let held = sqlx::query(
        "WITH t AS (SELECT coalesce($1::BIGINT, drydock_now()) AS now)
         UPDATE work_item SET lease_until = t.now + $2 FROM t
          WHERE object = $3 AND owner = $4 AND token = $5 AND lease_until > t.now",
    )
    .bind(claim_now)
    .bind(millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .execute(conn)
    .await?;
    if held.rows_affected() != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}

/// The database's time.
pub(super) async fn db_now(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT drydock_now()")
        .fetch_one(conn)
        .await?)
}

#[async_trait::async_trait]
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

    async fn insert_log(
        &mut self,
        object: ObjectId,
        kind: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO log (object, kind, message, created_at) VALUES ($1, $2, $3, $4)")
            .bind(object.to_string())
            .bind(kind)
            .bind(message)
            .bind(now)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_command(
        &mut self,
        target: ObjectId,
        kind: CommandKind,
        author: &str,
        now: i64,
    ) -> Result<Command> {
        let row = sqlx::query(
            "INSERT INTO command (target, kind, author, created_at) VALUES ($1, $2, $3, $4)
             RETURNING *",
        )
        .bind(target.to_string())
        .bind(kind_text(kind))
        .bind(author)
        .bind(now)
        .fetch_one(&mut *self.0)
        .await?;
        rows::command(&row)
    }

    async fn status_of(&mut self, object: ObjectId) -> Result<Option<(String, Option<i64>)>> {
        let query = by_table(
            object,
            "SELECT status, NULL::BIGINT FROM resource WHERE id = $1 FOR SHARE",
            "SELECT status, parent_resource_id FROM lease WHERE id = $1 FOR SHARE",
        )?;
        Ok(sqlx::query_as(query)
            .bind(object.number())
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn lock_status(&mut self, resource: ObjectId) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT status FROM resource WHERE id = $1 FOR UPDATE")
                .bind(resource.number())
                .fetch_optional(&mut *self.0)
                .await?,
        )
    }

    async fn consume(&mut self, id: i64, outcome: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE command SET consumed_at = $1, outcome = $2 WHERE id = $3 AND consumed_at IS NULL",
        )
        .bind(now)
        .bind(outcome)
        .bind(id)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected())
    }

    async fn set_status(&mut self, object: ObjectId, status: &str, now: i64) -> Result<()> {
        let update = by_table(
            object,
            "UPDATE resource SET status = $1, updated_at = $2 WHERE id = $3",
            "UPDATE lease SET status = $1, waiting = FALSE, updated_at = $2 WHERE id = $3",
        )?;
        sqlx::query(update)
            .bind(status)
            .bind(now)
            .bind(object.number())
            .execute(&mut *self.0)
            .await?;
        Ok(())
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

    async fn acquire(&mut self, lease: ObjectId, resource: ObjectId, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE lease SET status = 'acquired', resource_id = $1, acquiring = NULL,
                 waiting = FALSE, updated_at = $2 WHERE id = $3",
        )
        .bind(resource.number())
        .bind(now)
        .bind(lease.number())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn reacquire(&mut self, lease: ObjectId, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE lease SET status = 'pending', resource_id = NULL, acquiring = NULL,
                 exec_results = '[]', updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(lease.number())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn set_acquiring(&mut self, lease: ObjectId, resource: Option<ObjectId>) -> Result<()> {
        sqlx::query(
            "UPDATE lease SET exec_results = CASE WHEN acquiring IS NOT DISTINCT FROM $1
                                                  THEN exec_results ELSE '[]' END,
                 acquiring = $1 WHERE id = $2",
        )
        .bind(resource.map(ObjectId::number))
        .bind(lease.number())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn attributes(&mut self, object: ObjectId) -> Result<Option<String>> {
        let select = by_table(
            object,
            "SELECT attributes FROM resource WHERE id = $1 FOR UPDATE",
            "SELECT attributes FROM lease WHERE id = $1 FOR UPDATE",
        )?;
        Ok(sqlx::query_scalar(select)
            .bind(object.number())
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn set_attributes(&mut self, object: ObjectId, json: &str, now: i64) -> Result<()> {
        let update = by_table(
            object,
            "UPDATE resource SET attributes = $1, updated_at = $2 WHERE id = $3",
            "UPDATE lease SET attributes = $1, updated_at = $2 WHERE id = $3",
        )?;
        sqlx::query(update)
            .bind(json)
            .bind(now)
            .bind(object.number())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_until(&mut self, object: ObjectId, until: Option<i64>, now: i64) -> Result<()> {
        let update = by_table(
            object,
            "UPDATE resource SET until = $1, updated_at = $2 WHERE id = $3",
            "UPDATE lease SET until = $1, updated_at = $2 WHERE id = $3",
        )?;
        sqlx::query(update)
            .bind(until)
            .bind(now)
            .bind(object.number())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_exec_results(&mut self, object: ObjectId, json: &str) -> Result<()> {
        let update = by_table(
            object,
            "UPDATE resource SET exec_results = $1 WHERE id = $2",
            "UPDATE lease SET exec_results = $1 WHERE id = $2",
        )?;
        sqlx::query(update)
            .bind(json)
            .bind(object.number())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn take_lock(&mut self, name: &str, owner: ObjectId, now: i64) -> Result<String> {
        Ok(sqlx::query_scalar(
            "INSERT INTO slot_lock (name, owner, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET name = slot_lock.name
             RETURNING owner",
        )
        .bind(name)
        .bind(owner.to_string())
        .bind(now)
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn free_locks(&mut self, owner: ObjectId) -> Result<()> {
        sqlx::query("DELETE FROM slot_lock WHERE owner = $1")
            .bind(owner.to_string())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn resources_made_since(&mut self, blueprint: ObjectId, since: i64) -> Result<i64> {
        // Locks the blueprint's row: daemons allocating on it at once count one after another.
        let made: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM resource WHERE blueprint_id = b.id AND created_at > $2)
               FROM blueprint b WHERE b.id = $1 FOR UPDATE",
        )
        .bind(blueprint.number())
        .bind(since)
        .fetch_optional(&mut *self.0)
        .await?;
        made.ok_or_else(|| Error::NotFound(blueprint.to_string()))
    }

    async fn insert_resource(
        &mut self,
        blueprint: ObjectId,
        resource_type: &str,
        depth: u32,
        now: i64,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO resource (blueprint_id, resource_type, status, depth, created_at, updated_at)
             VALUES ($1, $2, 'pending', $3, $4, $4) RETURNING id",
        )
        .bind(blueprint.number())
        .bind(resource_type)
        .bind(i64::from(depth))
        .bind(now)
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn insert_supporting_lease(
        &mut self,
        parent: ObjectId,
        key: &str,
        resource_type: &str,
        attributes: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO lease (resource_type, status, attributes, owner, parent_resource_id,
                                parent_key, depth, created_at, updated_at)
             SELECT $1, 'pending', $2, $3, $4, $5, depth + 1, $6, $6 FROM resource WHERE id = $4
             RETURNING id",
        )
        .bind(resource_type)
        .bind(attributes)
        .bind(parent.to_string())
        .bind(parent.number())
        .bind(key)
        .bind(now)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn bump_capacity(&mut self, resource_type: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO capacity (resource_type, generation) VALUES ($1, 1)
             ON CONFLICT (resource_type) DO UPDATE SET generation = capacity.generation + 1",
        )
        .bind(resource_type)
        .execute(&mut *self.0)
        .await?;
        Ok(())
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

    async fn mark_waiting(&mut self, lease: ObjectId) -> Result<()> {
        sqlx::query("UPDATE lease SET waiting = TRUE WHERE id = $1")
            .bind(lease.number())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn failures(&mut self, blueprint: ObjectId) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT failures FROM blueprint WHERE id = $1 FOR UPDATE")
                .bind(blueprint.number())
                .fetch_optional(&mut *self.0)
                .await?,
        )
    }

    async fn add_failure(
        &mut self,
        blueprint: ObjectId,
        reason: &str,
        retry_at: i64,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "UPDATE blueprint SET failures = failures + 1, retry_at = $1, last_failure = $2
              WHERE id = $3 RETURNING failures",
        )
        .bind(retry_at)
        .bind(reason)
        .bind(blueprint.number())
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn clear_failures(&mut self, blueprint: ObjectId) -> Result<()> {
        sqlx::query(
            "UPDATE blueprint SET failures = 0, retry_at = NULL, last_failure = NULL WHERE id = $1",
        )
        .bind(blueprint.number())
        .execute(&mut *self.0)
        .await?;
        Ok(())
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
