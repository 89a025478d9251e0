//! The lease state machine: pending → acquired → active → released → destroyed (or broken).

use super::hooks::{Decision, HookCall, Settle, consume};
use super::{Next, RunError, Workers};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{CommandKind, Lease, Plan, Write};

/// One step of a lease's life.
pub(super) async fn step(w: &Workers, held: &Held) -> Result<Next, RunError> {
    let mut lease = w.store.lease_get(held.object()).await?;
    let commands = w.queued_commands(lease.id).await?;
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
            let plugin = w.plugin(held, &blueprint).await?;
            let call = HookCall {
                blueprint,
                plugin,
                hook: Hook::ActivateLease,
                resource: Some(resource),
                lease: Some(lease.clone()),
            };
            let called = w.call_hook(held, call, &mut Plan::new()).await?;
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
            let settle = Settle {
                subject: lease.id.into(),
                kind: "lease",
                phase: "activation",
                supporting: &[],
            };
            let (mut plan, next) = settle.plan(called, on_done, broken(&lease), w.store.now());
            let activated = plan.writes().iter().any(|write| {
                matches!(
                    write,
                    Write::LeaseStatus {
                        status: LeaseStatus::Active,
                        ..
                    }
                )
            });
            if activated {
                // Active until a command or the deadline: give the claim back now.
                plan.push(Write::ReleaseClaim {
                    wake_at: lease.until,
                });
                held.apply(&plan).await?;
                return Ok(Next::Wait(lease.until));
            }
            held.apply(&plan).await?;
            Ok(next)
        }
        dead => reacquire(held, &lease, &format!("{resource_id} is {dead}")).await,
    }
}

async fn reacquire(held: &Held, lease: &Lease, why: &str) -> Result<Next, RunError> {
    let mut plan = Plan::new();
    plan.push(Write::LeaseReacquire { lease: lease.id })
        .push(Write::FreeSlotLocks { owner: lease.id })
        .log(
            lease.id,
            "lease.reacquire",
            format!("{why}; looking for another resource"),
        );
    held.apply(&plan).await?;
    Ok(Next::Continue)
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
        let plugin = w.plugin(held, &blueprint).await?;
        let call = HookCall {
            blueprint,
            plugin,
            hook: Hook::ReleaseLease,
            resource: Some(resource),
            lease: Some(lease.clone()),
        };
        let called = w.call_hook(held, call, &mut unsaved).await?;
        let settle = Settle {
            subject: lease.id.into(),
            kind: "lease",
            phase: "release",
            supporting: &[],
        };
        // A failing release hook is logged; the lease is destroyed all the same.
        let (release_plan, next) = settle.plan(called, Vec::new(), Vec::new(), w.store.now());
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
    // Destroyed: nothing more to do, so the claim goes back in the same transaction. A command
    // posted meanwhile re-runs the object (the claim keeps its wake-up) and is ignored.
    plan.push(Write::ReleaseClaim { wake_at: None });
    held.apply(unsaved.append(plan)).await?;
    Ok(Next::Wait(None))
}

fn broken(lease: &Lease) -> Vec<Write> {
    vec![Write::LeaseStatus {
        lease: lease.id,
        status: LeaseStatus::Broken,
    }]
}

/// A supporting lease wakes the resource that owns it whenever it changes.
fn wake_parent(lease: &Lease) -> Option<Write> {
    lease.parent_resource_id.map(|parent| Write::Wake {
        object: parent.into(),
    })
}

/// Exposed to the allocator: writes that break a lease.
pub(crate) fn break_lease(lease: &Lease, kind: &str, message: String) -> Plan {
    let mut plan = Plan::new();
    for write in broken(lease) {
        plan.push(write);
    }
    plan.log(lease.id, kind, message);
    plan
}
