//! Applying a worker's [`Plan`] inside one guarded transaction, and the queue statements every
//! write shares (wake, log, command, guard, claim release).
//!
//! Decisions that depend on other objects are taken here, inside the transaction that writes
//! them: whether a reclaimed resource is still idle, whether a cascaded lease still takes a
//! release, whether a resource can still be acquired, whether a blueprint may make another
//! resource this minute. SQLite serialises write transactions, so what is read here cannot
//! change before the commit.

use super::super::{
    Claim, ClaimTime, Command, CommandKind, Error, ObjectId, Plan, Release, Result, Target, Write,
};
use super::rows::{command_from_row, exec_results_to_json, from_json, json, kind_text, parse};
use crate::domain::{Attributes, ExecResult, LeaseStatus, Timestamp};
use sqlx::SqliteConnection;
use std::time::Duration;

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// Marks an object due at `at`, creating its work item if needed (never delays an earlier wake).
pub(super) async fn wake(conn: &mut SqliteConnection, object: ObjectId, at: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO work_item (object, wake_at) VALUES (?1, ?2)
         ON CONFLICT (object) DO UPDATE SET wake_at =
             CASE WHEN wake_at IS NULL OR wake_at > ?2 THEN ?2 ELSE wake_at END",
    )
    .bind(object.to_string())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn insert_log(
    conn: &mut SqliteConnection,
    object: ObjectId,
    kind: &str,
    message: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO log (object, kind, message, created_at) VALUES (?1, ?2, ?3, ?4)")
        .bind(object.to_string())
        .bind(kind)
        .bind(message)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn insert_command(
    conn: &mut SqliteConnection,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Command> {
    let row = sqlx::query(
        "INSERT INTO command (target, kind, author, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING *",
    )
    .bind(target.to_string())
    .bind(kind_text(kind))
    .bind(author)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    wake(conn, target, now).await?;
    command_from_row(&row)
}

/// The status of a resource or lease as text, and for a supporting lease the resource that owns
/// it; or `NotFound`.
pub(super) async fn status_of(
    conn: &mut SqliteConnection,
    object: ObjectId,
) -> Result<(String, Option<i64>)> {
    let query = match object {
        ObjectId::Resource(_) => "SELECT status, NULL FROM resource WHERE id = ?1",
        ObjectId::Lease(_) => "SELECT status, parent_resource_id FROM lease WHERE id = ?1",
        ObjectId::Blueprint(_) => return Err(Error::NotFound(format!("{object} has no status"))),
    };
    sqlx::query_as(query)
        .bind(object.number())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(object.to_string()))
}

/// Why `kind` cannot be sent to an object in `status` (owned by `parent`, for a supporting
/// lease), if it cannot. A destroyed object takes nothing; a supporting lease belongs to its
/// resource; a release to a released or broken object is queued and consumed as ignored, so
/// every attempt stays on record.
pub(super) fn refusal(
    object: ObjectId,
    kind: CommandKind,
    status: &str,
    parent: Option<i64>,
) -> Option<String> {
    match kind {
        _ if status == "destroyed" => Some(format!("{object} is destroyed; it cannot be released")),
        CommandKind::Release if parent.is_some() => Some(format!(
            "{object} is a supporting lease of {}: it belongs to that resource and is released \
             with it; release {} instead",
            ObjectId::Resource(parent.unwrap_or_default()),
            ObjectId::Resource(parent.unwrap_or_default())
        )),
        CommandKind::Reclaim if !matches!(object, ObjectId::Resource(_)) => Some(format!(
            "{object} is a {}; only resources can be reclaimed",
            object.kind()
        )),
        CommandKind::Reclaim if status != "active" => Some(format!(
            "{object} is {status}; only active resources can be reclaimed"
        )),
        _ => None,
    }
}

/// The fencing guard that starts every worker write: extends the claim only if it is still held
/// and unexpired in claim time. Touching no row means someone else may be the writer; nothing
/// may be written.
pub(super) async fn guard(
    conn: &mut SqliteConnection,
    claim: &Claim,
    at: &ClaimTime,
    ttl: Duration,
) -> Result<()> {
    let held = sqlx::query(
        "UPDATE work_item SET lease_until = ?1
          WHERE object = ?2 AND owner = ?3 AND token = ?4 AND claim_boot = ?5 AND lease_until > ?6",
    )
    .bind(at.ms + millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .bind(&at.boot)
    .bind(at.ms)
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

/// Gives a claim back: `owner = NULL`, keeping a wake-up that arrived during the run.
pub(super) async fn release_claim(
    conn: &mut SqliteConnection,
    claim: &Claim,
    release: &Release,
) -> Result<()> {
    let done = sqlx::query(
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
    .execute(conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}

/// Applies the writes of one plan, in order, on the transaction's connection.
pub(super) struct Applier<'a> {
    pub tx: &'a mut SqliteConnection,
    pub claim: &'a Claim,
    pub now: i64,
    pub inserted: Vec<ObjectId>,
}

impl Applier<'_> {
    fn resolve(&self, target: Target) -> Result<ObjectId> {
        match target {
            Target::Id(id) => Ok(id),
            Target::Inserted(n) => self.inserted.get(n).copied().ok_or_else(|| {
                Error::Precondition(format!("plan refers to insert #{n}, which it has not made"))
            }),
        }
    }

    /// Applies every write of `plan`.
    pub async fn plan(&mut self, plan: &Plan) -> Result<()> {
        for write in plan.writes() {
            self.apply(write).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, write: &Write) -> Result<()> {
        match write {
            Write::ConsumeCommand { id, outcome } => self.consume(*id, outcome).await,
            Write::LeaseStatus { lease, status } => self.set_status(*lease, status.as_str()).await,
            Write::ResourceStatus { resource, status } => {
                let resource = self.resolve(*resource)?;
                self.set_status(resource, status.as_str()).await
            }
            Write::LeaseAcquire { lease, resource } => {
                let resource = self.resolve(*resource)?;
                self.lease_acquire(*lease, resource).await
            }
            Write::LeaseReacquire { lease } => self.lease_reacquire(*lease).await,
            Write::SetAttribute { object, key, value } => {
                let object = self.resolve(*object)?;
                self.edit_attributes(object, |a| {
                    a.insert(key.clone(), value.clone());
                })
                .await
            }
            Write::RemoveAttribute { object, key } => {
                let object = self.resolve(*object)?;
                self.edit_attributes(object, |a| {
                    a.remove(key);
                })
                .await
            }
            Write::SetUntil { object, until } => {
                let object = self.resolve(*object)?;
                self.set_until(object, *until).await
            }
            Write::SetExecResults { object, results } => {
                self.set_exec_results(*object, results).await
            }
            Write::TakeSlotLocks { owner, names } => {
                let owner = self.resolve(*owner)?;
                self.take_locks(owner, names).await
            }
            Write::FreeSlotLocks { owner } => self.free_locks(*owner).await,
            Write::Log {
                object,
                kind,
                message,
            } => {
                let object = self.resolve(*object)?;
                insert_log(self.tx, object, kind, message, self.now).await
            }
            Write::PostCommand {
                target,
                kind,
                author,
            } => insert_command(self.tx, *target, *kind, author, self.now)
                .await
                .map(drop),
            Write::Wake { object } => {
                let object = self.resolve(*object)?;
                wake(self.tx, object, self.now).await
            }
            Write::CascadeRelease { lease, author } => self.cascade_release(*lease, author).await,
            Write::WakeHolders { resource } => self.wake_holders(*resource).await,
            Write::WakeIfDestroying { resource } => {
                let (status, _) = status_of(self.tx, *resource).await?;
                if status == "released" || status == "broken" {
                    wake(self.tx, *resource, self.now).await?;
                }
                Ok(())
            }
            Write::ReleaseClaim { wake_at } => {
                let release = Release {
                    wake_at: *wake_at,
                    ..Release::default()
                };
                release_claim(self.tx, self.claim, &release).await
            }
            Write::InsertResource {
                blueprint,
                resource_type,
                depth,
                per_minute,
            } => {
                self.insert_resource(*blueprint, resource_type, *depth, *per_minute)
                    .await
            }
            Write::InsertSupportingLease {
                parent,
                key,
                resource_type,
                attributes,
            } => {
                let parent = self.resolve(*parent)?;
                self.insert_supporting_lease(parent, key, resource_type, attributes)
                    .await
            }
            Write::Reclaim {
                resource,
                command,
                author,
            } => self.reclaim(*resource, *command, author).await,
            Write::WakeWaiting { resource_type } => self.wake_waiting(resource_type).await,
            Write::WaitForCapacity {
                lease,
                resource_type,
                seen,
            } => self.wait_for_capacity(*lease, resource_type, *seen).await,
            Write::SetAcquiring { lease, resource } => self.set_acquiring(*lease, *resource).await,
            Write::BlueprintFailed {
                blueprint,
                reason,
                retry_at,
            } => self.blueprint_failed(*blueprint, reason, *retry_at).await,
            Write::BlueprintRecovered { blueprint } => self.blueprint_recovered(*blueprint).await,
        }
    }

    async fn consume(&mut self, id: i64, outcome: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE command SET consumed_at = ?1, outcome = ?2 WHERE id = ?3 AND consumed_at IS NULL",
        )
        .bind(self.now)
        .bind(outcome)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Precondition(format!(
                "command {id} was already consumed"
            )));
        }
        Ok(())
    }

    /// Sets a resource's or lease's status (given as its text).
    async fn set_status(&mut self, object: ObjectId, status: &str) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => {
                "UPDATE resource SET status = ?1, updated_at = ?2 WHERE id = ?3"
            }
            ObjectId::Lease(_) => {
                "UPDATE lease SET status = ?1, waiting = 0, updated_at = ?2 WHERE id = ?3"
            }
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no status")));
            }
        };
        sqlx::query(update)
            .bind(status)
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn cascade_release(&mut self, lease: ObjectId, author: &str) -> Result<()> {
        let (status, _) = status_of(self.tx, lease).await?;
        let queued: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM command
                             WHERE target = ?1 AND kind = 'release' AND consumed_at IS NULL)",
        )
        .bind(lease.to_string())
        .fetch_one(&mut *self.tx)
        .await?;
        let releasable = parse::<LeaseStatus>(&status).is_ok_and(LeaseStatus::is_releasable);
        if releasable && !queued {
            insert_command(self.tx, lease, CommandKind::Release, author, self.now).await?;
        }
        Ok(())
    }

    async fn reclaim(&mut self, resource: ObjectId, command: i64, author: &str) -> Result<()> {
        let (status, _) = status_of(self.tx, resource).await?;
        let holders: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM lease WHERE resource_id = ?1 AND status != 'destroyed' ORDER BY id",
        )
        .bind(resource.number())
        .fetch_all(&mut *self.tx)
        .await?;
        let outcome = if status != "active" {
            format!("ignored: the resource is already {status}")
        } else if !holders.is_empty() {
            let ids: Vec<String> = holders.iter().map(|n| format!("L{n}")).collect();
            format!("ignored: the resource is in use by {}", ids.join(", "))
        } else {
            self.set_status(resource, "released").await?;
            let message = format!("reclaimed by {author}");
            insert_log(self.tx, resource, "resource.reclaim", &message, self.now).await?;
            "applied".to_string()
        };
        self.consume(command, &outcome).await
    }

    async fn lease_acquire(&mut self, lease: ObjectId, resource: ObjectId) -> Result<()> {
        let (status, _) = status_of(self.tx, resource).await?;
        if status != "pending" && status != "active" {
            return Err(Error::Precondition(format!(
                "{resource} is {status}; it cannot be acquired"
            )));
        }
        sqlx::query(
            "UPDATE lease SET status = 'acquired', resource_id = ?1, acquiring = NULL, waiting = 0,
                 updated_at = ?2 WHERE id = ?3",
        )
        .bind(resource.number())
        .bind(self.now)
        .bind(lease.number())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn lease_reacquire(&mut self, lease: ObjectId) -> Result<()> {
        sqlx::query(
            "UPDATE lease SET status = 'pending', resource_id = NULL, acquiring = NULL,
                 exec_results = '[]', updated_at = ?1 WHERE id = ?2",
        )
        .bind(self.now)
        .bind(lease.number())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_acquiring(&mut self, lease: ObjectId, resource: Option<ObjectId>) -> Result<()> {
        // Exec results belong to the acquisition they were made for: switching resources (or
        // giving up) forgets them.
        sqlx::query(
            "UPDATE lease SET exec_results = CASE WHEN acquiring IS ?1 THEN exec_results ELSE '[]' END,
                 acquiring = ?1 WHERE id = ?2",
        )
        .bind(resource.map(ObjectId::number))
        .bind(lease.number())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn edit_attributes(
        &mut self,
        object: ObjectId,
        edit: impl FnOnce(&mut Attributes),
    ) -> Result<()> {
        let (select, update) = match object {
            ObjectId::Resource(_) => (
                "SELECT attributes FROM resource WHERE id = ?1",
                "UPDATE resource SET attributes = ?1, updated_at = ?2 WHERE id = ?3",
            ),
            ObjectId::Lease(_) => (
                "SELECT attributes FROM lease WHERE id = ?1",
                "UPDATE lease SET attributes = ?1, updated_at = ?2 WHERE id = ?3",
            ),
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no attributes")));
            }
        };
        let text: String = sqlx::query_scalar(select)
            .bind(object.number())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let mut attributes: Attributes = from_json(&text)?;
        edit(&mut attributes);
        sqlx::query(update)
            .bind(json(&attributes))
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Sets a deadline and schedules the object for it: if this is the claimed object, its
    /// claim is given back with the wake-up in place; otherwise it is woken then.
    async fn set_until(&mut self, object: ObjectId, until: Option<Timestamp>) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => {
                "UPDATE resource SET until = ?1, updated_at = ?2 WHERE id = ?3"
            }
            ObjectId::Lease(_) => "UPDATE lease SET until = ?1, updated_at = ?2 WHERE id = ?3",
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no deadline")));
            }
        };
        sqlx::query(update)
            .bind(until.map(|t| t as i64))
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        if let Some(until) = until {
            wake(self.tx, object, until as i64).await?;
        }
        Ok(())
    }

    async fn set_exec_results(&mut self, object: ObjectId, results: &[ExecResult]) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => "UPDATE resource SET exec_results = ?1 WHERE id = ?2",
            ObjectId::Lease(_) => "UPDATE lease SET exec_results = ?1 WHERE id = ?2",
            ObjectId::Blueprint(_) => return Err(Error::NotFound(object.to_string())),
        };
        sqlx::query(update)
            .bind(exec_results_to_json(results))
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn take_locks(&mut self, owner: ObjectId, names: &[String]) -> Result<()> {
        for name in names {
            let holder: String = sqlx::query_scalar(
                "INSERT INTO slot_lock (name, owner, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET name = name
                 RETURNING owner",
            )
            .bind(name)
            .bind(owner.to_string())
            .bind(self.now)
            .fetch_one(&mut *self.tx)
            .await?;
            if holder != owner.to_string() {
                return Err(Error::SlotLockBusy {
                    name: name.clone(),
                    holder,
                });
            }
        }
        Ok(())
    }

    async fn free_locks(&mut self, owner: ObjectId) -> Result<()> {
        sqlx::query("DELETE FROM slot_lock WHERE owner = ?1")
            .bind(owner.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_resource(
        &mut self,
        blueprint: ObjectId,
        resource_type: &str,
        depth: u32,
        per_minute: u32,
    ) -> Result<()> {
        let made: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM resource WHERE blueprint_id = ?1 AND created_at > ?2",
        )
        .bind(blueprint.number())
        .bind(self.now - 60_000)
        .fetch_one(&mut *self.tx)
        .await?;
        if made >= i64::from(per_minute) {
            return Err(Error::RateLimited(format!(
                "{blueprint} made {made} resources in the last minute, its limit"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO resource (blueprint_id, resource_type, status, depth, created_at, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?4) RETURNING id",
        )
        .bind(blueprint.number())
        .bind(resource_type)
        .bind(depth)
        .bind(self.now)
        .fetch_one(&mut *self.tx)
        .await?;
        let resource = ObjectId::Resource(id);
        wake(self.tx, resource, self.now).await?;
        self.inserted.push(resource);
        Ok(())
    }

    async fn insert_supporting_lease(
        &mut self,
        parent: ObjectId,
        key: &str,
        resource_type: &str,
        attributes: &Attributes,
    ) -> Result<()> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lease (resource_type, status, attributes, owner, parent_resource_id,
                                parent_key, depth, created_at, updated_at)
             SELECT ?1, 'pending', ?2, ?3, ?4, ?5, depth + 1, ?6, ?6 FROM resource WHERE id = ?4
             RETURNING id",
        )
        .bind(resource_type)
        .bind(json(attributes))
        .bind(parent.to_string())
        .bind(parent.number())
        .bind(key)
        .bind(self.now)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or_else(|| Error::NotFound(parent.to_string()))?;
        let lease = ObjectId::Lease(id);
        wake(self.tx, lease, self.now).await?;
        insert_log(
            self.tx,
            lease,
            "lease.queued",
            &format!("requested by {parent} as {key:?}"),
            self.now,
        )
        .await?;
        self.inserted.push(lease);
        Ok(())
    }

    async fn wake_holders(&mut self, resource: ObjectId) -> Result<()> {
        let holders: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM lease INDEXED BY lease_live_on_resource
              WHERE resource_id = ?1 AND status != 'destroyed'",
        )
        .bind(resource.number())
        .fetch_all(&mut *self.tx)
        .await?;
        for lease in holders {
            wake(self.tx, ObjectId::Lease(lease), self.now).await?;
        }
        Ok(())
    }

    /// Moves the type's capacity generation on and wakes the leases waiting for it, each due
    /// at its request time so that they are claimed oldest first.
    async fn wake_waiting(&mut self, resource_type: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO capacity (resource_type, generation) VALUES (?1, 1)
             ON CONFLICT (resource_type) DO UPDATE SET generation = generation + 1",
        )
        .bind(resource_type)
        .execute(&mut *self.tx)
        .await?;
        let woken: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE lease SET waiting = 0 WHERE waiting = 1 AND resource_type = ?1
             RETURNING id, created_at",
        )
        .bind(resource_type)
        .fetch_all(&mut *self.tx)
        .await?;
        for (id, requested) in woken {
            wake(self.tx, ObjectId::Lease(id), requested).await?;
        }
        Ok(())
    }

    async fn wait_for_capacity(
        &mut self,
        lease: ObjectId,
        resource_type: &str,
        seen: i64,
    ) -> Result<()> {
        let now: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT generation FROM capacity WHERE resource_type = ?1), 0)",
        )
        .bind(resource_type)
        .fetch_one(&mut *self.tx)
        .await?;
        if now != seen {
            return wake(self.tx, lease, self.now).await;
        }
        sqlx::query("UPDATE lease SET waiting = 1 WHERE id = ?1")
            .bind(lease.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn blueprint_failed(
        &mut self,
        blueprint: ObjectId,
        reason: &str,
        retry_at: Timestamp,
    ) -> Result<()> {
        let failures: i64 = sqlx::query_scalar(
            "UPDATE blueprint SET failures = failures + 1, retry_at = ?1, last_failure = ?2
              WHERE id = ?3 RETURNING failures",
        )
        .bind(retry_at as i64)
        .bind(reason)
        .bind(blueprint.number())
        .fetch_one(&mut *self.tx)
        .await?;
        if failures == super::super::FAILING_AFTER {
            let message = format!(
                "failing: {failures} allocations or activations in a row failed; the last: {reason}"
            );
            insert_log(self.tx, blueprint, "blueprint.failing", &message, self.now).await?;
        }
        Ok(())
    }

    async fn blueprint_recovered(&mut self, blueprint: ObjectId) -> Result<()> {
        let failures: i64 = sqlx::query_scalar("SELECT failures FROM blueprint WHERE id = ?1")
            .bind(blueprint.number())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| Error::NotFound(blueprint.to_string()))?;
        if failures == 0 {
            return Ok(());
        }
        sqlx::query(
            "UPDATE blueprint SET failures = 0, retry_at = NULL, last_failure = NULL WHERE id = ?1",
        )
        .bind(blueprint.number())
        .execute(&mut *self.tx)
        .await?;
        if failures >= super::super::FAILING_AFTER {
            let message = "working again: an allocation or activation succeeded";
            insert_log(self.tx, blueprint, "blueprint.recovered", message, self.now).await?;
        }
        Ok(())
    }
}
