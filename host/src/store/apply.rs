//! Applying a worker's [`Plan`] inside one guarded transaction, written once for every backend.
//!
//! [`Applier`] builds every [`Write`] from the statements of `store::queries`, run on the
//! transaction's connection, including the decisions that depend
//! on other objects and must be taken inside the transaction that writes them: whether a
//! reclaimed resource is still idle, whether a cascaded lease still takes a release, whether a
//! resource can still be acquired, which leases hold a resource that just became active, whether
//! capacity appeared since a lease decided to wait, whether a blueprint may make another
//! resource this minute. The backend makes those reads safe (SQLite serialises write
//! transactions; PostgreSQL locks the rows it reads).

use super::conn::Conn;
use super::queries::{
    blueprint, capacity, command, lease, log, object, resource, slot_lock, step, work_item,
};
use super::rows::{exec_results_to_json, from_json, json};
use super::{
    Applied, Claim, Command, CommandKind, Error, FAILING_AFTER, ObjectId, Plan, Release, Result,
    Target, Write,
};
use crate::domain::{Attributes, ExecResult, LeaseStatus, Timestamp};
use crate::limits::{Limit, Limits, NoRoom, Setup, room};

/// Applies the writes of one plan, in order, on a write transaction's connection.
struct Applier<'a> {
    /// The transaction's connection.
    st: &'a mut dyn Conn,
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
    st: &mut dyn Conn,
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
                object::set_status(self.st, *lease, status.as_str(), now).await
            }
            Write::ResourceStatus { resource, status } => {
                let resource = self.resolve(*resource)?;
                object::set_status(self.st, resource, status.as_str(), now).await
            }
            Write::LeaseAcquire { lease, resource } => {
                let resource = self.resolve(*resource)?;
                self.acquire(*lease, resource).await
            }
            Write::LeaseReacquire { lease } => lease::reacquire(self.st, *lease, now).await,
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
            Write::FreeSlotLocks { owner } => slot_lock::free(self.st, *owner).await,
            Write::Log {
                object,
                kind,
                message,
            } => {
                let object = self.resolve(*object)?;
                log::add(self.st, object, kind, message, now).await
            }
            Write::LogIfNew {
                object,
                kind,
                message,
            } => {
                let last = log::last(self.st, *object).await?;
                if last.as_ref() == Some(&(kind.clone(), message.clone())) {
                    return Ok(());
                }
                log::add(self.st, *object, kind, message, now).await
            }
            Write::BlueprintLog {
                object,
                blueprint,
                entries,
            } => {
                let object = self.resolve(*object)?;
                for (kind, message) in entries {
                    log::add_charged(self.st, object, kind, message, Some(*blueprint), now).await?;
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
                work_item::wake(self.st, object, now).await
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
                lease::set_acquiring(self.st, *lease, resource).await
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
                object::set_end(self.st, object, kind.as_str(), detail.as_deref(), now).await
            }
            Write::RecordStep(step) => step::insert(self.st, step, now).await,
        }
    }

    async fn post(&mut self, target: ObjectId, kind: CommandKind, author: &str) -> Result<Command> {
        post(self.st, target, kind, author, self.now).await
    }

    async fn consume(&mut self, id: i64, outcome: &str) -> Result<()> {
        let Some(kind) = command::consume(self.st, id, outcome, self.now).await? else {
            return Err(Error::Precondition(format!(
                "command {id} was already consumed"
            )));
        };
        let kind = CommandKind::parse(&kind).unwrap_or(CommandKind::Release);
        self.applied.consumed.push((kind, outcome == "applied"));
        Ok(())
    }

    async fn status(&mut self, object: ObjectId) -> Result<String> {
        Ok(object::status(self.st, object)
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
        lease::acquire(self.st, lease, resource, self.now).await
    }

    async fn cascade_release(&mut self, lease: ObjectId, author: &str) -> Result<()> {
        let status = self.status(lease).await?;
        let releasable = status
            .parse::<LeaseStatus>()
            .is_ok_and(LeaseStatus::is_releasable);
        if releasable && !command::release_queued(self.st, lease).await? {
            self.post(lease, CommandKind::Release, author).await?;
        }
        Ok(())
    }

    async fn reclaim(&mut self, resource: ObjectId, command: i64, author: &str) -> Result<()> {
        let status = resource::lock_status(self.st, resource)
            .await?
            .ok_or_else(|| Error::NotFound(resource.to_string()))?;
        let holders = lease::holders(self.st, resource).await?;
        let outcome = if status != "active" {
            format!("ignored: the resource is already {status}")
        } else if !holders.is_empty() {
            let ids: Vec<String> = holders.iter().map(|n| format!("L{n}")).collect();
            format!("ignored: the resource is in use by {}", ids.join(", "))
        } else {
            object::set_status(self.st, resource, "released", self.now).await?;
            let reclaimer = format!("reclaim by {author}");
            object::set_end(self.st, resource, "released", Some(&reclaimer), self.now).await?;
            let message = format!("reclaimed by {author}");
            log::add(self.st, resource, "resource.reclaim", &message, self.now).await?;
            "applied".to_string()
        };
        self.consume(command, &outcome).await
    }

    async fn wake_holders(&mut self, resource: ObjectId) -> Result<()> {
        for lease in lease::holders(self.st, resource).await? {
            work_item::wake(self.st, ObjectId::Lease(lease), self.now).await?;
        }
        Ok(())
    }

    async fn wake_if_destroying(&mut self, resource: ObjectId) -> Result<()> {
        let status = self.status(resource).await?;
        if status == "released" || status == "broken" {
            work_item::wake(self.st, resource, self.now).await?;
        }
        Ok(())
    }

    async fn edit_attributes(
        &mut self,
        object: ObjectId,
        edit: impl FnOnce(&mut Attributes),
    ) -> Result<()> {
        let text = object::attributes(self.st, object)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let mut attributes: Attributes = from_json(&text)?;
        edit(&mut attributes);
        object::set_attributes(self.st, object, &json(&attributes), self.now).await
    }

    /// Sets a deadline and schedules the object for it (its claim, if it is the claimed object,
    /// is given back with the wake-up in place).
    async fn set_until(&mut self, object: ObjectId, until: Option<Timestamp>) -> Result<()> {
        let until = until.map(|t| t as i64);
        object::set_until(self.st, object, until, self.now).await?;
        if let Some(until) = until {
            work_item::wake(self.st, object, until).await?;
        }
        Ok(())
    }

    async fn set_exec_results(&mut self, object: ObjectId, results: &[ExecResult]) -> Result<()> {
        object::set_exec_results(self.st, object, &exec_results_to_json(results)).await
    }

    async fn take_locks(&mut self, owner: ObjectId, names: &[String]) -> Result<()> {
        for name in names {
            let holder = slot_lock::take(self.st, name, owner, self.now).await?;
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
        work_item::release(self.st, self.claim, release).await
    }

    async fn insert_resource(&mut self, new: NewResource<'_>, limits: &Limits) -> Result<()> {
        let blueprint = new.blueprint;
        let (name, tat) = blueprint::lock_bucket(self.st, blueprint).await?;
        let setup = Setup {
            tat,
            ..resource::setup(self.st, blueprint, new.made_for).await?
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
        blueprint::set_bucket(self.st, blueprint, tat).await?;
        let id = resource::insert(self.st, &new, self.now).await?;
        let resource = ObjectId::Resource(id);
        let tenant = crate::scheduler::blueprint_tenant(blueprint);
        work_item::enqueue(self.st, resource, &tenant, self.now).await?;
        self.applied.inserted.push(resource);
        Ok(())
    }

    async fn insert_supporting_lease(
        &mut self,
        new: NewSupporting<'_>,
        waiting_limit: u64,
    ) -> Result<()> {
        let waiting = lease::supporting_waiting(self.st, new.requester).await?;
        if waiting as u64 >= waiting_limit {
            let (name, _) = blueprint::lock_bucket(self.st, new.requester).await?;
            let reason = format!(
                "{name}'s resources have {waiting} supporting leases waiting, its limit \
                 (pending-supporting={waiting_limit}); {} asks again later",
                new.parent
            );
            return Err(limited(&name, Limit::PendingSupporting, reason, None));
        }
        let id = lease::insert_supporting(
            self.st,
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
        work_item::enqueue(self.st, lease, &tenant, self.now).await?;
        let message = format!("requested by {} as {:?}", new.parent, new.key);
        log::add(self.st, lease, "lease.queued", &message, self.now).await?;
        self.applied.inserted.push(lease);
        Ok(())
    }

    /// Moves the type's capacity generation on and wakes the leases waiting for it, each due at
    /// its request time so that they are claimed oldest first.
    async fn wake_waiting(&mut self, resource_type: &str) -> Result<()> {
        capacity::changed(self.st, resource_type).await
    }

    async fn wait_for_capacity(
        &mut self,
        lease: ObjectId,
        resource_type: &str,
        seen: i64,
    ) -> Result<()> {
        if capacity::lock_generation(self.st, resource_type).await? != seen {
            return work_item::wake(self.st, lease, self.now).await;
        }
        lease::mark_waiting(self.st, lease).await
    }

    async fn blueprint_failed(
        &mut self,
        blueprint: ObjectId,
        reason: &str,
        retry_at: Timestamp,
    ) -> Result<()> {
        let failures = blueprint::add_failure(self.st, blueprint, reason, retry_at as i64).await?;
        if failures == FAILING_AFTER {
            let message = format!(
                "failing: {failures} allocations or activations in a row failed; the last: {reason}"
            );
            log::add(self.st, blueprint, "blueprint.failing", &message, self.now).await?;
        }
        Ok(())
    }

    async fn blueprint_recovered(&mut self, blueprint: ObjectId) -> Result<()> {
        let failures = blueprint::failures(self.st, blueprint).await?;
        if failures == 0 {
            return Ok(());
        }
        blueprint::clear_failures(self.st, blueprint).await?;
        if failures >= FAILING_AFTER {
            let message = "working again: an allocation or activation succeeded";
            log::add(self.st, blueprint, "blueprint.recovered", message, self.now).await?;
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

/// Queues `kind` for every target, all or none: every target is checked before any command is
/// inserted.
pub(crate) async fn post_all(
    st: &mut dyn Conn,
    targets: &[ObjectId],
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Vec<Command>> {
    for target in targets {
        let (status, parent) = object::status(st, *target)
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
    st: &mut dyn Conn,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Command> {
    let command = command::insert(st, target, kind, author, now).await?;
    work_item::wake(st, target, now).await?;
    Ok(command)
}
