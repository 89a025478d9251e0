//! Applying a worker's [`Plan`] inside one guarded transaction, written once for every backend.
//!
//! A backend provides [`Statements`]: one SQL statement each, run on the transaction's
//! connection. [`Applier`] builds every [`Write`] from them, including the decisions that depend
//! on other objects and must be taken inside the transaction that writes them: whether a
//! reclaimed resource is still idle, whether a cascaded lease still takes a release, whether a
//! resource can still be acquired, which leases hold a resource that just became active, whether
//! capacity appeared since a lease decided to wait, whether a blueprint may make another
//! resource this minute. The backend makes those reads safe (SQLite serialises write
//! transactions; PostgreSQL locks the rows it reads).

use super::rows::{exec_results_to_json, from_json, json};
use super::{
    Applied, Claim, Command, CommandKind, Error, FAILING_AFTER, ObjectId, Plan, Release, Result,
    Target, Write,
};
use crate::domain::{Attributes, ExecResult, LeaseStatus, Timestamp};
use crate::limits::{Limit, Limits, NoRoom, Setup, room};

/// The statements a backend runs inside a write transaction.
#[async_trait::async_trait]
pub(crate) trait Statements: Send {
    /// Marks an object due at `at`, creating its work item if needed (never delays an earlier
    /// wake).
    async fn wake(&mut self, object: ObjectId, at: i64) -> Result<()>;
    /// Appends a log entry, counted against the log quota of `charged` if it is a blueprint's.
    async fn insert_charged_log(
        &mut self,
        object: ObjectId,
        kind: &str,
        message: &str,
        charged: Option<ObjectId>,
        now: i64,
    ) -> Result<()>;
    /// Appends a log entry of the host's own.
    async fn insert_log(
        &mut self,
        object: ObjectId,
        kind: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        self.insert_charged_log(object, kind, message, None, now)
            .await
    }
    /// The kind and text of an object's last log entry, if it has one.
    async fn last_log(&mut self, object: ObjectId) -> Result<Option<(String, String)>>;
    /// Makes the work item of a new object, belonging to `tenant` (`crate::scheduler`), due at
    /// `at`.
    async fn enqueue(&mut self, object: ObjectId, tenant: &str, at: i64) -> Result<()>;
    /// Inserts a command (without waking its target).
    async fn insert_command(
        &mut self,
        target: ObjectId,
        kind: CommandKind,
        author: &str,
        now: i64,
    ) -> Result<Command>;
    /// A resource's or lease's status and, for a supporting lease, its owner's number; the row
    /// cannot change before the transaction ends (a shared lock where the backend needs one).
    async fn status_of(&mut self, object: ObjectId) -> Result<Option<(String, Option<i64>)>>;
    /// A resource's status, the row locked for update: the transaction is about to change it
    /// on what it reads.
    async fn lock_status(&mut self, resource: ObjectId) -> Result<Option<String>>;
    /// Records a command's outcome; the command's kind, or `None` if it was consumed already.
    async fn consume(&mut self, id: i64, outcome: &str, now: i64) -> Result<Option<String>>;
    /// Sets a resource's or lease's status (a lease stops waiting for capacity).
    async fn set_status(&mut self, object: ObjectId, status: &str, now: i64) -> Result<()>;
    /// Whether a release for the lease is queued.
    async fn release_queued(&mut self, lease: ObjectId) -> Result<bool>;
    /// Numbers of the live leases holding a resource.
    async fn holders(&mut self, resource: ObjectId) -> Result<Vec<i64>>;
    /// Makes a lease acquired on a resource.
    async fn acquire(&mut self, lease: ObjectId, resource: ObjectId, now: i64) -> Result<()>;
    /// Sends an acquired lease back to pending, forgetting its resource and exec results.
    async fn reacquire(&mut self, lease: ObjectId, now: i64) -> Result<()>;
    /// Remembers the resource an acquisition is about; exec results of another are forgotten.
    async fn set_acquiring(&mut self, lease: ObjectId, resource: Option<ObjectId>) -> Result<()>;
    /// An object's attributes as stored.
    async fn attributes(&mut self, object: ObjectId) -> Result<Option<String>>;
    /// Replaces an object's attributes.
    async fn set_attributes(&mut self, object: ObjectId, json: &str, now: i64) -> Result<()>;
    /// Sets or clears an object's deadline.
    async fn set_until(&mut self, object: ObjectId, until: Option<i64>, now: i64) -> Result<()>;
    /// Replaces an object's exec results.
    async fn set_exec_results(&mut self, object: ObjectId, json: &str) -> Result<()>;
    /// Takes a slot lock if it is free; returns its holder (the owner if it took it).
    async fn take_lock(&mut self, name: &str, owner: ObjectId, now: i64) -> Result<String>;
    /// Frees every slot lock an object holds.
    async fn free_locks(&mut self, owner: ObjectId) -> Result<()>;
    /// A blueprint's resources being set up (pending): all of them, and those made for leases
    /// of `tenant`.
    async fn resources_setting_up(
        &mut self,
        blueprint: ObjectId,
        tenant: &str,
    ) -> Result<(i64, i64)>;
    /// Supporting leases waiting (pending) that resources of `requester` asked for.
    async fn supporting_waiting(&mut self, requester: ObjectId) -> Result<i64>;
    /// A blueprint's name and its resource bucket (`limits::Rate`: the time, in µs, at which
    /// it is full again), the row locked until the transaction ends.
    async fn lock_resource_bucket(&mut self, blueprint: ObjectId) -> Result<Option<(String, i64)>>;
    /// Stores a blueprint's resource bucket.
    async fn set_resource_bucket(&mut self, blueprint: ObjectId, tat: i64) -> Result<()>;
    /// Inserts a pending resource; its number.
    async fn insert_resource(&mut self, new: &NewResource<'_>, now: i64) -> Result<i64>;
    /// Inserts a pending supporting lease of `parent` (a resource of `requester`), one deeper;
    /// its number, or `None` if the parent does not exist.
    async fn insert_supporting_lease(
        &mut self,
        parent: ObjectId,
        requester: ObjectId,
        key: &str,
        resource_type: &str,
        attributes: &str,
        now: i64,
    ) -> Result<Option<i64>>;
    /// Moves a type's capacity generation on.
    async fn bump_capacity(&mut self, resource_type: &str) -> Result<()>;
    /// A type's capacity generation.
    async fn capacity(&mut self, resource_type: &str) -> Result<i64>;
    /// Stops the leases waiting for capacity of a type from waiting; their numbers and request
    /// times.
    async fn take_waiting(&mut self, resource_type: &str) -> Result<Vec<(i64, i64)>>;
    /// Marks a lease as waiting for capacity.
    async fn mark_waiting(&mut self, lease: ObjectId) -> Result<()>;
    /// A blueprint's failures in a row.
    async fn failures(&mut self, blueprint: ObjectId) -> Result<Option<i64>>;
    /// A blueprint, locked until the transaction ends: what a change computed from it starts
    /// from.
    async fn lock_blueprint(&mut self, blueprint: ObjectId) -> Result<Option<super::Blueprint>>;
    /// Adds a failure to a blueprint's streak; the streak's length.
    async fn add_failure(
        &mut self,
        blueprint: ObjectId,
        reason: &str,
        retry_at: i64,
    ) -> Result<i64>;
    /// Records how an object ended, unless an end is recorded already.
    async fn set_end(
        &mut self,
        object: ObjectId,
        kind: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Appends a step to the audit trail.
    async fn insert_step(&mut self, step: &super::StepRecord, now: i64) -> Result<()>;
    /// Ends a blueprint's failure streak.
    async fn clear_failures(&mut self, blueprint: ObjectId) -> Result<()>;
    /// Gives a claim back, keeping a wake-up that arrived during the run; the rows it changed
    /// (0 if the claim was not held).
    async fn release_claim(&mut self, claim: &Claim, release: &Release) -> Result<u64>;
}

/// Applies the writes of one plan, in order, through a backend's [`Statements`].
struct Applier<'a> {
    /// The transaction's statements.
    st: &'a mut dyn Statements,
    /// The claim the plan is applied under.
    claim: &'a Claim,
    /// The transaction's time.
    now: i64,
    /// What the plan did so far.
    applied: Applied,
}

/// Applies every write of `plan` under `claim`, at `now`, inside the transaction `st` runs in
/// (whose guard the caller has passed); what it did, to be counted once it commits.
pub(crate) async fn apply_plan(
    st: &mut dyn Statements,
    claim: &Claim,
    plan: &Plan,
    now: i64,
) -> Result<Applied> {
    let mut applier = Applier {
        st,
        claim,
        now,
        applied: Applied::default(),
    };
    applier.plan(plan).await?;
    Ok(applier.applied)
}

impl Applier<'_> {
    /// Applies every write of `plan`.
    async fn plan(&mut self, plan: &Plan) -> Result<()> {
        for write in plan.writes() {
            self.apply(write).await?;
        }
        Ok(())
    }

    fn resolve(&self, target: Target) -> Result<ObjectId> {
        match target {
            Target::Id(id) => Ok(id),
            Target::Inserted(n) => self.applied.inserted.get(n).copied().ok_or_else(|| {
                Error::Precondition(format!("plan refers to insert #{n}, which it has not made"))
            }),
        }
    }

    async fn apply(&mut self, write: &Write) -> Result<()> {
        let now = self.now;
        match write {
            Write::ConsumeCommand { id, outcome } => self.consume(*id, outcome).await,
            Write::LeaseStatus { lease, status } => {
                self.st.set_status(*lease, status.as_str(), now).await
            }
            Write::ResourceStatus { resource, status } => {
                let resource = self.resolve(*resource)?;
                self.st.set_status(resource, status.as_str(), now).await
            }
            Write::LeaseAcquire { lease, resource } => {
                let resource = self.resolve(*resource)?;
                self.acquire(*lease, resource).await
            }
            Write::LeaseReacquire { lease } => self.st.reacquire(*lease, now).await,
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
            Write::FreeSlotLocks { owner } => self.st.free_locks(*owner).await,
            Write::Log {
                object,
                kind,
                message,
            } => {
                let object = self.resolve(*object)?;
                self.st.insert_log(object, kind, message, now).await
            }
            Write::LogIfNew {
                object,
                kind,
                message,
            } => {
                let last = self.st.last_log(*object).await?;
                if last.as_ref() == Some(&(kind.clone(), message.clone())) {
                    return Ok(());
                }
                self.st.insert_log(*object, kind, message, now).await
            }
            Write::BlueprintLog {
                object,
                blueprint,
                entries,
            } => {
                let object = self.resolve(*object)?;
                for (kind, message) in entries {
                    self.st
                        .insert_charged_log(object, kind, message, Some(*blueprint), now)
                        .await?;
                }
                Ok(())
            }
            Write::PostCommand {
                target,
                kind,
                author,
            } => self.post(*target, *kind, author).await.map(drop),
            Write::Wake { object } => {
                let object = self.resolve(*object)?;
                self.st.wake(object, now).await
            }
            Write::CascadeRelease { lease, author } => self.cascade_release(*lease, author).await,
            Write::WakeHolders { resource } => self.wake_holders(*resource).await,
            Write::WakeIfDestroying { resource } => self.wake_if_destroying(*resource).await,
            Write::ReleaseClaim { wake_at } => {
                let release = Release {
                    wake_at: *wake_at,
                    ..Release::default()
                };
                self.release_claim(&release).await
            }
            Write::InsertResource {
                blueprint,
                resource_type,
                depth,
                made_for,
                made_for_lease,
                limits,
            } => {
                let new = NewResource {
                    blueprint: *blueprint,
                    resource_type,
                    depth: *depth,
                    made_for,
                    made_for_lease: *made_for_lease,
                };
                self.insert_resource(new, limits).await
            }
            Write::InsertSupportingLease {
                parent,
                requester,
                waiting_limit,
                key,
                resource_type,
                attributes,
            } => {
                let parent = self.resolve(*parent)?;
                let lease = NewSupporting {
                    parent,
                    requester: *requester,
                    key,
                    resource_type,
                    attributes,
                };
                self.insert_supporting_lease(lease, *waiting_limit).await
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
            Write::SetAcquiring { lease, resource } => {
                let resource = resource.map(|r| self.resolve(r)).transpose()?;
                self.st.set_acquiring(*lease, resource).await
            }
            Write::BlueprintFailed {
                blueprint,
                reason,
                retry_at,
            } => self.blueprint_failed(*blueprint, reason, *retry_at).await,
            Write::BlueprintRecovered { blueprint } => self.blueprint_recovered(*blueprint).await,
            Write::End {
                object,
                kind,
                detail,
            } => {
                let object = self.resolve(*object)?;
                self.st
                    .set_end(object, kind.as_str(), detail.as_deref(), now)
                    .await
            }
            Write::RecordStep(step) => self.st.insert_step(step, now).await,
        }
    }

    async fn post(&mut self, target: ObjectId, kind: CommandKind, author: &str) -> Result<Command> {
        post(self.st, target, kind, author, self.now).await
    }

    async fn consume(&mut self, id: i64, outcome: &str) -> Result<()> {
        let Some(kind) = self.st.consume(id, outcome, self.now).await? else {
            return Err(Error::Precondition(format!(
                "command {id} was already consumed"
            )));
        };
        let kind = match kind.as_str() {
            "reclaim" => CommandKind::Reclaim,
            _ => CommandKind::Release,
        };
        self.applied.consumed.push((kind, outcome == "applied"));
        Ok(())
    }

    async fn status(&mut self, object: ObjectId) -> Result<String> {
        Ok(self
            .st
            .status_of(object)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?
            .0)
    }

    async fn acquire(&mut self, lease: ObjectId, resource: ObjectId) -> Result<()> {
        let status = self.status(resource).await?;
        if status != "pending" && status != "active" {
            return Err(Error::Precondition(format!(
                "{resource} is {status}; it cannot be acquired"
            )));
        }
        self.st.acquire(lease, resource, self.now).await
    }

    async fn cascade_release(&mut self, lease: ObjectId, author: &str) -> Result<()> {
        let status = self.status(lease).await?;
        let releasable = status
            .parse::<LeaseStatus>()
            .is_ok_and(LeaseStatus::is_releasable);
        if releasable && !self.st.release_queued(lease).await? {
            self.post(lease, CommandKind::Release, author).await?;
        }
        Ok(())
    }

    async fn reclaim(&mut self, resource: ObjectId, command: i64, author: &str) -> Result<()> {
        let status = self
            .st
            .lock_status(resource)
            .await?
            .ok_or_else(|| Error::NotFound(resource.to_string()))?;
        let holders = self.st.holders(resource).await?;
        let outcome = if status != "active" {
            format!("ignored: the resource is already {status}")
        } else if !holders.is_empty() {
            let ids: Vec<String> = holders.iter().map(|n| format!("L{n}")).collect();
            format!("ignored: the resource is in use by {}", ids.join(", "))
        } else {
            self.st.set_status(resource, "released", self.now).await?;
            let reclaimer = format!("reclaim by {author}");
            self.st
                .set_end(resource, "released", Some(&reclaimer), self.now)
                .await?;
            let message = format!("reclaimed by {author}");
            self.st
                .insert_log(resource, "resource.reclaim", &message, self.now)
                .await?;
            "applied".to_string()
        };
        self.consume(command, &outcome).await
    }

    async fn wake_holders(&mut self, resource: ObjectId) -> Result<()> {
        for lease in self.st.holders(resource).await? {
            self.st.wake(ObjectId::Lease(lease), self.now).await?;
        }
        Ok(())
    }

    async fn wake_if_destroying(&mut self, resource: ObjectId) -> Result<()> {
        let status = self.status(resource).await?;
        if status == "released" || status == "broken" {
            self.st.wake(resource, self.now).await?;
        }
        Ok(())
    }

    async fn edit_attributes(
        &mut self,
        object: ObjectId,
        edit: impl FnOnce(&mut Attributes),
    ) -> Result<()> {
        let text = self
            .st
            .attributes(object)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let mut attributes: Attributes = from_json(&text)?;
        edit(&mut attributes);
        self.st
            .set_attributes(object, &json(&attributes), self.now)
            .await
    }

    /// Sets a deadline and schedules the object for it (its claim, if it is the claimed object,
    /// is given back with the wake-up in place).
    async fn set_until(&mut self, object: ObjectId, until: Option<Timestamp>) -> Result<()> {
        let until = until.map(|t| t as i64);
        self.st.set_until(object, until, self.now).await?;
        if let Some(until) = until {
            self.st.wake(object, until).await?;
        }
        Ok(())
    }

    async fn set_exec_results(&mut self, object: ObjectId, results: &[ExecResult]) -> Result<()> {
        self.st
            .set_exec_results(object, &exec_results_to_json(results))
            .await
    }

    async fn take_locks(&mut self, owner: ObjectId, names: &[String]) -> Result<()> {
        for name in names {
            let holder = self.st.take_lock(name, owner, self.now).await?;
            if holder != owner.to_string() {
                return Err(Error::SlotLockBusy {
                    name: name.clone(),
                    holder,
                });
            }
        }
        Ok(())
    }

    async fn release_claim(&mut self, release: &Release) -> Result<()> {
        release_claim(self.st, self.claim, release).await
    }

    async fn insert_resource(&mut self, new: NewResource<'_>, limits: &Limits) -> Result<()> {
        let blueprint = new.blueprint;
        let (name, tat) = self.resource_bucket(blueprint).await?;
        let (setting_up, mine) = self
            .st
            .resources_setting_up(blueprint, new.made_for)
            .await?;
        let setup = Setup {
            setting_up: setting_up as u64,
            mine: mine as u64,
            tat,
        };
        let tat = match room(limits, setup, self.now) {
            Ok(tat) => tat,
            Err(no_room) => {
                let reason = no_room.reason(&name, limits, setup, new.made_for);
                let retry_at = match no_room {
                    NoRoom::Bucket { retry_at } => retry_at.map(|at| at as Timestamp),
                    NoRoom::SettingUp { .. } => None,
                };
                return Err(limited(&name, no_room.limit(), reason, retry_at));
            }
        };
        self.st.set_resource_bucket(blueprint, tat).await?;
        let id = self.st.insert_resource(&new, self.now).await?;
        let resource = ObjectId::Resource(id);
        let tenant = crate::scheduler::blueprint_tenant(blueprint);
        self.st.enqueue(resource, &tenant, self.now).await?;
        self.applied.inserted.push(resource);
        Ok(())
    }

    async fn insert_supporting_lease(
        &mut self,
        new: NewSupporting<'_>,
        waiting_limit: u64,
    ) -> Result<()> {
        let waiting = self.st.supporting_waiting(new.requester).await?;
        if waiting as u64 >= waiting_limit {
            let (name, _) = self.resource_bucket(new.requester).await?;
            let reason = format!(
                "{name}'s resources have {waiting} supporting leases waiting, its limit \
                 (pending-supporting={waiting_limit}); {} asks again later",
                new.parent
            );
            return Err(limited(&name, Limit::PendingSupporting, reason, None));
        }
        let id = self
            .st
            .insert_supporting_lease(
                new.parent,
                new.requester,
                new.key,
                new.resource_type,
                &json(new.attributes),
                self.now,
            )
            .await?
            .ok_or_else(|| Error::NotFound(new.parent.to_string()))?;
        let lease = ObjectId::Lease(id);
        let tenant = crate::scheduler::blueprint_tenant(new.requester);
        self.st.enqueue(lease, &tenant, self.now).await?;
        let message = format!("requested by {} as {:?}", new.parent, new.key);
        self.st
            .insert_log(lease, "lease.queued", &message, self.now)
            .await?;
        self.applied.inserted.push(lease);
        Ok(())
    }

    /// A blueprint's name and resource bucket, locked for the rest of the transaction.
    async fn resource_bucket(&mut self, blueprint: ObjectId) -> Result<(String, i64)> {
        self.st
            .lock_resource_bucket(blueprint)
            .await?
            .ok_or_else(|| Error::NotFound(blueprint.to_string()))
    }

    /// Moves the type's capacity generation on and wakes the leases waiting for it, each due at
    /// its request time so that they are claimed oldest first.
    async fn wake_waiting(&mut self, resource_type: &str) -> Result<()> {
        capacity_changed(self.st, resource_type).await
    }

    async fn wait_for_capacity(
        &mut self,
        lease: ObjectId,
        resource_type: &str,
        seen: i64,
    ) -> Result<()> {
        if self.st.capacity(resource_type).await? != seen {
            return self.st.wake(lease, self.now).await;
        }
        self.st.mark_waiting(lease).await
    }

    async fn blueprint_failed(
        &mut self,
        blueprint: ObjectId,
        reason: &str,
        retry_at: Timestamp,
    ) -> Result<()> {
        let failures = self
            .st
            .add_failure(blueprint, reason, retry_at as i64)
            .await?;
        if failures == FAILING_AFTER {
            let message = format!(
                "failing: {failures} allocations or activations in a row failed; the last: {reason}"
            );
            self.st
                .insert_log(blueprint, "blueprint.failing", &message, self.now)
                .await?;
        }
        Ok(())
    }

    async fn blueprint_recovered(&mut self, blueprint: ObjectId) -> Result<()> {
        let failures = self
            .st
            .failures(blueprint)
            .await?
            .ok_or_else(|| Error::NotFound(blueprint.to_string()))?;
        if failures == 0 {
            return Ok(());
        }
        self.st.clear_failures(blueprint).await?;
        if failures >= FAILING_AFTER {
            let message = "working again: an allocation or activation succeeded";
            self.st
                .insert_log(blueprint, "blueprint.recovered", message, self.now)
                .await?;
        }
        Ok(())
    }
}

/// A resource a plan inserts.
pub(crate) struct NewResource<'a> {
    /// Its blueprint.
    pub blueprint: ObjectId,
    /// Its type.
    pub resource_type: &'a str,
    /// Its depth.
    pub depth: u32,
    /// The tenant of the lease it is made for.
    pub made_for: &'a str,
    /// The lease it is made for.
    pub made_for_lease: Option<ObjectId>,
}

/// A supporting lease a plan inserts.
struct NewSupporting<'a> {
    parent: ObjectId,
    requester: ObjectId,
    key: &'a str,
    resource_type: &'a str,
    attributes: &'a Attributes,
}

/// The refusal of a limit of `blueprint`'s (counted in the metrics by whoever meets it).
pub(crate) fn limited(
    blueprint: &str,
    limit: Limit,
    reason: String,
    retry_at: Option<Timestamp>,
) -> Error {
    Error::Limited {
        blueprint: blueprint.to_string(),
        limit,
        reason,
        retry_at,
    }
}

/// Why `kind` cannot be sent to an object in `status` (owned by `parent`, for a supporting
/// lease), if it cannot. A destroyed object takes nothing; a supporting lease belongs to its
/// resource; a release to a released or broken object is queued and consumed as ignored, so
/// every attempt stays on record.
pub(crate) fn refusal(
    object: ObjectId,
    kind: CommandKind,
    status: &str,
    parent: Option<i64>,
) -> Option<String> {
    match (kind, parent.map(ObjectId::Resource)) {
        _ if status == "destroyed" => Some(format!("{object} is destroyed; it cannot be released")),
        (CommandKind::Release, Some(parent)) => Some(format!(
            "{object} is a supporting lease of {parent}: it belongs to that resource and is \
             released with it; release {parent} instead"
        )),
        (CommandKind::Reclaim, _) if !matches!(object, ObjectId::Resource(_)) => Some(format!(
            "{object} is a {}; only resources can be reclaimed",
            object.kind()
        )),
        (CommandKind::Reclaim, _) if status != "active" => Some(format!(
            "{object} is {status}; only active resources can be reclaimed"
        )),
        _ => None,
    }
}

/// Capacity for `resource_type` may have appeared: a new generation, and every lease waiting
/// for it woken, in request order.
pub(crate) async fn capacity_changed(st: &mut dyn Statements, resource_type: &str) -> Result<()> {
    st.bump_capacity(resource_type).await?;
    for (id, requested) in st.take_waiting(resource_type).await? {
        st.wake(ObjectId::Lease(id), requested).await?;
    }
    Ok(())
}

/// Gives a claim back; `Error::Fenced` if it was no longer held.
pub(crate) async fn release_claim(
    st: &mut dyn Statements,
    claim: &Claim,
    release: &Release,
) -> Result<()> {
    held_if_one(st.release_claim(claim, release).await?, claim)
}

/// A guard or claim release touches the claim's one row while the claim is held; no row means
/// someone else may be the writer: `Error::Fenced`.
pub(crate) fn held_if_one(rows: u64, claim: &Claim) -> Result<()> {
    if rows != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}

/// Queues `kind` for every target, all or none: every target is checked before any command is
/// inserted.
pub(crate) async fn post_all(
    st: &mut dyn Statements,
    targets: &[ObjectId],
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Vec<Command>> {
    for target in targets {
        let (status, parent) = st
            .status_of(*target)
            .await?
            .ok_or_else(|| Error::NotFound(target.to_string()))?;
        if let Some(reason) = refusal(*target, kind, &status, parent) {
            return Err(Error::NotReleasable(reason));
        }
    }
    let mut commands = Vec::with_capacity(targets.len());
    for target in targets {
        commands.push(post(st, *target, kind, author, now).await?);
    }
    Ok(commands)
}

/// Queues a command and wakes its target.
async fn post(
    st: &mut dyn Statements,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Command> {
    let command = st.insert_command(target, kind, author, now).await?;
    st.wake(target, now).await?;
    Ok(command)
}
