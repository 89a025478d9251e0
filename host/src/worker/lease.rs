//! The lease state machine: pending → acquired → active → released → destroyed (or broken).

use super::hooks::{Decision, HookCall, REFUSED, Settle, Subject, consume};
use super::{Next, RunError, Shape, Workers};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{
    Blueprint, CommandKind, EndKind, Lease, ObjectId, Plan, Resource, Target, Write,
};

/// One step of a lease's life.
pub(super) async fn step(w: &Workers, held: &Held) -> Result<Next, RunError> {
    let (mut lease, commands) = w.store.lease_with_commands(held.object()).await?;
    if !commands.is_empty() {
        let (consumed, status) = consume_commands(&lease, &commands);
        if status != lease.status {
            // Released: straight on to the release logic. The consumed commands commit with
            // its outcome, one transaction instead of two; a crash before then leaves them
            // queued, and the next run consumes them again.
            lease.status = status;
            return destroy(w, held, lease, consumed).await;
        }
        held.apply(&consumed).await?;
        return Ok(Next::Continue);
    }
    if w.expire(held, lease.until, lease.status.is_releasable())
        .await?
    {
        return Ok(Next::Continue);
    }
    match lease.status {
        LeaseStatus::Pending => crate::allocator::allocate(w, held, &lease).await,
        LeaseStatus::Acquired => activate(w, held, lease).await,
        LeaseStatus::Active => Ok(Next::Wait(lease.until)),
        LeaseStatus::Released | LeaseStatus::Broken => destroy(w, held, lease, Plan::new()).await,
        LeaseStatus::Destroyed => Ok(Next::Wait(None)),
    }
}

/// The writes that consume `commands`, and the lease's status after them.
fn consume_commands(lease: &Lease, commands: &[crate::store::Command]) -> (Plan, LeaseStatus) {
    let mut status = lease.status;
    let plan = consume(commands, |command| match command.kind {
        CommandKind::Reclaim => Decision::Ignore("leases cannot be reclaimed".into()),
        CommandKind::Release if status.is_releasable() => {
            status = LeaseStatus::Released;
            Decision::Apply(vec![
                Write::LeaseStatus {
                    lease: lease.id,
                    status,
                },
                Write::Log {
                    object: lease.id.into(),
                    kind: "lease.released".into(),
                    message: format!("released by {}", command.author),
                },
                Write::released(lease.id, &command.author),
            ])
        }
        CommandKind::Release => Decision::Ignore(format!("the lease is already {status}")),
    });
    (plan, status)
}

/// Acquired → active, once the resource is active; back to pending if the resource died.
async fn activate(w: &Workers, held: &Held, lease: Lease) -> Result<Next, RunError> {
    let Some(resource_id) = lease.resource_id else {
        return reacquire(held, &lease, "the lease holds no resource").await;
    };
    let resource = w.store.resource_get(resource_id).await?;
    match resource.status {
        ResourceStatus::Pending => Ok(Next::Wait(Some(w.after(w.config.resource_wait)))),
        ResourceStatus::Active => {
            let blueprint = w.store.blueprint_get(resource.blueprint_id).await?;
            let (plan, next) =
                activation(w, held, lease, resource, &blueprint, Plan::new()).await?;
            held.apply(&plan).await?;
            Ok(next)
        }
        _ if broke(&resource) => resource_broke(w, held, &lease, resource_id).await,
        dead => reacquire(held, &lease, &format!("{resource_id} is {dead}")).await,
    }
}

/// Whether `resource` broke: it is broken, or was broken and is already torn down.
pub(crate) fn broke(resource: &Resource) -> bool {
    resource.status == ResourceStatus::Broken
        || resource
            .end
            .as_ref()
            .is_some_and(|end| end.kind == EndKind::Broken)
}

/// Resources that may break under one lease before the lease breaks too: a resource that keeps
/// failing for this lease (a repository that does not exist) ends the lease with the reason.
const RESOURCES_BROKEN_PER_LEASE: usize = 3;

/// The lease's resource (or the one being made for it) broke before the lease was active: the
/// lease says why (the resource's
/// own last failure), and looks for another resource after a back-off of its own (the
/// blueprint serves other requests meanwhile), or breaks once [`RESOURCES_BROKEN_PER_LEASE`]
/// resources have broken under it, or at once when the host refused the resource's step in a
/// way any other resource would meet too (a supporting lease past its bounds, or one its
/// blueprint may not use): so a refused request makes one resource, not one per retry.
pub(crate) async fn resource_broke(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    resource: ObjectId,
) -> Result<Next, RunError> {
    let failure = w
        .store
        .log_list(Some(resource), 0, i64::MAX)
        .await?
        .into_iter()
        .rev()
        .find(|l| {
            l.kind.ends_with("-failure")
                || l.kind.ends_with(REFUSED)
                || l.kind == "resource.gave-up"
        });
    let refused = failure.as_ref().is_some_and(|l| l.kind.ends_with(REFUSED));
    let reason = failure.map_or_else(|| "no reason was logged".to_string(), |l| l.message);
    let lease_logs = w.store.log_list(Some(lease.id), 0, i64::MAX).await?;
    let broke = 1 + lease_logs
        .iter()
        .filter(|l| l.kind == RESOURCE_BROKE)
        .count();
    let last = match (refused, broke >= RESOURCES_BROKEN_PER_LEASE) {
        (true, _) => Some("another resource would meet the same refusal".to_string()),
        (false, true) => Some(format!("{broke} resources broke under this lease")),
        (false, false) => None,
    };
    if let Some(last) = last {
        let why = format!("{resource} broke: {reason}; {last}, so it is broken too");
        held.apply(&break_lease(lease, "lease.allocation-failure", why))
            .await?;
        return Ok(Next::Continue);
    }
    let retry_at = w.after(w.config.retry.delay(broke as u32));
    let why = format!(
        "{resource} broke: {reason}; another resource is tried from {}",
        crate::domain::format_time(retry_at)
    );
    held.apply(&reacquisition(lease, RESOURCE_BROKE, &why))
        .await?;
    Ok(Next::Wait(Some(retry_at)))
}

/// The log kind of a lease whose resource broke under it.
const RESOURCE_BROKE: &str = "lease.resource-broke";

/// `activate-lease` for an acquired `lease` on its active `resource` (made by `blueprint`),
/// and the writes that follow, after `unsaved` (an acquisition not yet committed, which `lease`
/// already shows). An activated lease waits for a command or its deadline, so its plan also
/// gives the claim back.
pub(crate) async fn activation(
    w: &Workers,
    held: &Held,
    lease: Lease,
    resource: Resource,
    blueprint: &Blueprint,
    mut unsaved: Plan,
) -> Result<(Plan, Next), RunError> {
    let resource_id = resource.id;
    let call = HookCall {
        blueprint: blueprint.clone(),
        hook: Hook::ActivateLease,
        resource: Some(resource),
        lease: Some(lease.clone()),
    };
    let called = w.call_hook(held, call, &mut unsaved).await?;
    let mut on_done = vec![
        Write::LeaseStatus {
            lease: lease.id,
            status: LeaseStatus::Active,
        },
        Write::Log {
            object: lease.id.into(),
            kind: "lease.activated".into(),
            message: format!("active on {resource_id}"),
        },
    ];
    on_done.extend(wake_parent(&lease));
    on_done.extend(w.blueprint_worked(blueprint, &called));
    let settle = Settle {
        subject: Subject {
            target: lease.id.into(),
            kind: "lease",
            blueprint,
        },
        phase: "activation",
        supporting: &[],
        min_yield: w.config.min_yield,
    };
    let shape = Shape::of(&lease.resource_type, &lease.attributes);
    let on_fail = |reason: &str, blame| {
        let mut writes = broken(&lease, reason);
        writes.extend(w.blueprint_failed(blueprint, reason, blame, shape));
        writes
    };
    let (plan, next) = settle.plan(called, on_done, on_fail, w.store.now());
    let after = planned(&lease, &plan);
    unsaved.append(plan);
    if after.status == LeaseStatus::Active {
        // An activated lease waits for a command or its deadline, which the hook may have
        // just set.
        unsaved.push(Write::ReleaseClaim {
            wake_at: after.until,
        });
        return Ok((unsaved, Next::Wait(after.until)));
    }
    Ok((unsaved, next))
}

/// The lease as `plan` will leave it, in the fields a blueprint's snapshot shows: for a call
/// made before the plan commits, in the same transaction as the call's own writes.
pub(crate) fn planned(lease: &Lease, plan: &Plan) -> Lease {
    let mut after = lease.clone();
    let me = Target::Id(lease.id);
    for write in plan.writes() {
        match write {
            Write::LeaseAcquire {
                lease,
                resource: Target::Id(resource),
            } if *lease == after.id => {
                after.status = LeaseStatus::Acquired;
                after.resource_id = Some(*resource);
            }
            Write::LeaseStatus { lease, status } if *lease == after.id => after.status = *status,
            Write::SetAttribute { object, key, value } if *object == me => {
                after.attributes.insert(key.clone(), value.clone());
            }
            Write::RemoveAttribute { object, key } if *object == me => {
                after.attributes.remove(key);
            }
            Write::SetUntil { object, until } if *object == me => after.until = *until,
            Write::SetExecResults { object, results } if *object == after.id => {
                after.exec_results = results.clone();
            }
            _ => {}
        }
    }
    after
}

async fn reacquire(held: &Held, lease: &Lease, why: &str) -> Result<Next, RunError> {
    held.apply(&reacquisition(lease, "lease.reacquire", why))
        .await?;
    Ok(Next::Continue)
}

/// Back to pending, without the resource and the slot locks, saying why.
fn reacquisition(lease: &Lease, kind: &str, why: &str) -> Plan {
    let mut plan = Plan::new();
    plan.push(Write::LeaseReacquire { lease: lease.id })
        .push(Write::FreeSlotLocks { owner: lease.id })
        .log(
            lease.id,
            kind,
            format!("{why}; looking for another resource"),
        );
    plan
}

/// Released or broken → destroyed: the blueprint's release logic, then the lease is gone.
/// `unsaved` (consumed commands) commits with the first write this makes.
async fn destroy(
    w: &Workers,
    held: &Held,
    lease: Lease,
    mut unsaved: Plan,
) -> Result<Next, RunError> {
    let mut plan = Plan::new();
    if let Some(resource_id) = lease.resource_id {
        let resource = w.store.resource_get(resource_id).await?;
        let blueprint = w.store.blueprint_get(resource.blueprint_id).await?;
        let call = HookCall {
            blueprint: blueprint.clone(),
            hook: Hook::ReleaseLease,
            resource: Some(resource),
            lease: Some(lease.clone()),
        };
        let called = w.call_hook(held, call, &mut unsaved).await?;
        let settle = Settle {
            subject: Subject {
                target: lease.id.into(),
                kind: "lease",
                blueprint: &blueprint,
            },
            phase: "release",
            supporting: &[],
            min_yield: w.config.min_yield,
        };
        // A failing release hook is logged; the lease is destroyed all the same.
        let (release_plan, next) =
            settle.plan(called, Vec::new(), |_, _| Vec::new(), w.store.now());
        if let Next::Wait(at) = next {
            held.apply(unsaved.append(release_plan)).await?;
            return Ok(Next::Wait(at));
        }
        plan = release_plan;
        plan.push(Write::WakeIfDestroying {
            resource: resource_id,
        });
    }
    plan.push(Write::LeaseStatus {
        lease: lease.id,
        status: LeaseStatus::Destroyed,
    })
    .push(Write::FreeSlotLocks { owner: lease.id })
    .log(lease.id, "lease.destroyed", "destroyed");
    if let Some(write) = wake_parent(&lease) {
        plan.push(write);
    }
    if lease.resource_id.is_some() {
        // The resource may take another lease now.
        plan.push(Write::WakeWaiting {
            resource_type: lease.resource_type.clone(),
        });
    }
    // Destroyed: nothing more to do, so the claim goes back in the same transaction. A command
    // posted meanwhile re-runs the object (the claim keeps its wake-up) and is ignored.
    plan.push(Write::ReleaseClaim { wake_at: None });
    held.apply(unsaved.append(plan)).await?;
    Ok(Next::Wait(None))
}

/// The writes that break a lease, keeping `reason` as its end.
pub(crate) fn broken(lease: &Lease, reason: &str) -> Vec<Write> {
    vec![
        Write::LeaseStatus {
            lease: lease.id,
            status: LeaseStatus::Broken,
        },
        Write::broke(lease.id, reason),
    ]
}

/// A supporting lease wakes the resource that owns it whenever it changes.
fn wake_parent(lease: &Lease) -> Option<Write> {
    lease.parent_resource_id.map(|parent| Write::Wake {
        object: parent.into(),
    })
}

/// The lease failed too many runs: it breaks if it still can (and returns `true`), else it
/// stays as it is; either way the reason is logged.
pub(super) fn give_up(lease: &Lease, why: &str) -> (Plan, bool) {
    if lease.status.is_releasable() {
        return (break_lease(lease, "lease.gave-up", why.to_string()), true);
    }
    let mut plan = Plan::new();
    plan.log(
        lease.id,
        "lease.gave-up",
        format!("{why}; trying again later (or at the next release)"),
    );
    (plan, false)
}

/// Exposed to the allocator: writes that break a lease.
pub(crate) fn break_lease(lease: &Lease, kind: &str, message: String) -> Plan {
    let mut plan = Plan::new();
    for write in broken(lease, &message) {
        plan.push(write);
    }
    plan.log(lease.id, kind, message);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectId;

    #[test]
    fn a_planned_lease_shows_the_writes_on_it_and_only_those() {
        let lease = Lease {
            id: ObjectId::Lease(1),
            resource_type: "host".into(),
            status: LeaseStatus::Pending,
            attributes: [("old".to_string(), "x".to_string())].into(),
            allowed_blueprints: Vec::new(),
            owner: "test".into(),
            resource_id: None,
            parent_resource_id: None,
            parent_key: None,
            until: None,
            depth: 0,
            acquiring: None,
            end: None,
            exec_results: Vec::new(),
            created_at: 0,
            updated_at: 0,
        };
        let me = Target::Id(lease.id);
        let mut plan = Plan::new();
        plan.push(Write::SetAttribute {
            object: me,
            key: "dir".into(),
            value: "/w/1".into(),
        })
        .push(Write::RemoveAttribute {
            object: me,
            key: "old".into(),
        })
        .push(Write::SetUntil {
            object: me,
            until: Some(42),
        })
        .push(Write::SetAttribute {
            object: Target::Id(ObjectId::Lease(2)),
            key: "other".into(),
            value: "y".into(),
        })
        .push(Write::LeaseAcquire {
            lease: lease.id,
            resource: Target::Id(ObjectId::Resource(7)),
        });
        let after = planned(&lease, &plan);
        assert_eq!(after.status, LeaseStatus::Acquired);
        assert_eq!(after.resource_id, Some(ObjectId::Resource(7)));
        assert_eq!(
            after.attributes,
            [("dir".to_string(), "/w/1".to_string())].into()
        );
        assert_eq!(after.until, Some(42));

        plan.push(Write::LeaseStatus {
            lease: lease.id,
            status: LeaseStatus::Broken,
        });
        assert_eq!(planned(&lease, &plan).status, LeaseStatus::Broken);
    }
}
