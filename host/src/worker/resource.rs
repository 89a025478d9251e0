//! The resource state machine: pending → active → released → destroyed (or broken).

use super::hooks::{Decision, HookCall, Settle, Subject, consume};
use super::{Next, RunError, Shape, Workers};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{Blueprint, CommandKind, Lease, Plan, Resource, Write};

/// One step of a resource's life.
pub(super) async fn step(w: &Workers, held: &Held) -> Result<Next, RunError> {
    let resource = w.store.resource_get(held.object()).await?;
    let commands = w.queued_commands(resource.id).await?;
    if !commands.is_empty() {
        held.apply(&consume_commands(&resource, &commands)).await?;
        return Ok(Next::Continue);
    }
    if w.expire(held, resource.until, resource.status.is_releasable())
        .await?
    {
        return Ok(Next::Continue);
    }
    match resource.status {
        ResourceStatus::Pending => activate(w, held, resource).await,
        ResourceStatus::Active => match lost_support(w, &resource).await? {
            Some(reason) => {
                let mut plan = Plan::new();
                for write in broken(&resource, &reason) {
                    plan.push(write);
                }
                plan.log(resource.id, "resource.support-lost", reason);
                held.apply(&plan).await?;
                Ok(Next::Continue)
            }
            None => Ok(Next::Wait(resource.until)),
        },
        ResourceStatus::Released | ResourceStatus::Broken => destroy(w, held, resource).await,
        ResourceStatus::Destroyed => Ok(Next::Wait(None)),
    }
}

/// Why an active resource cannot go on: one of its supporting leases ended (its resource was
/// released, it broke or expired, someone released it) other than by the resource's own
/// `release-lease`. Such a resource stands on nothing (a working copy whose host is gone): it
/// breaks, saying so, its leases go and the next request gets a new one. A supporting lease
/// wakes its resource whenever it changes (`lease::wake_parent`), so this runs at once.
async fn lost_support(w: &Workers, resource: &Resource) -> Result<Option<String>, RunError> {
    if resource.supporting == 0 {
        return Ok(None);
    }
    let own = resource.id.to_string();
    let supporting = w.store.lease_list_supporting(resource.id).await?;
    let lost = supporting.into_iter().find(|lease| {
        let released_by_itself = lease.end.as_ref().is_some_and(|end| {
            end.kind == crate::store::EndKind::Released && end.detail.as_deref() == Some(&own)
        });
        !lease.status.is_releasable() && !released_by_itself
    });
    Ok(lost.map(|lease| {
        let key = lease.parent_key.as_deref().unwrap_or("?");
        let end = match &lease.end {
            Some(end) => end.to_string(),
            None => lease.status.to_string(),
        };
        format!(
            "its supporting lease {} ({key:?}) ended ({end}); it cannot go on without it",
            lease.id
        )
    }))
}

async fn live_leases(w: &Workers, resource: &Resource) -> Result<Vec<Lease>, RunError> {
    Ok(w.store.lease_list_on_resource(resource.id).await?)
}

/// The shape of the request a resource is being set up for: that of the lease it was made for
/// (which may not hold it yet: the resource's activation can run before that lease's
/// acquisition), else of the first lease on it, or of its type alone when none is known.
async fn request_shape(w: &Workers, resource: &Resource) -> Result<Shape, RunError> {
    let made_for = match resource.made_for_lease {
        Some(id) => match w.store.lease_get(id).await {
            Ok(lease) => Some(lease),
            Err(crate::store::Error::NotFound(_)) => None,
            Err(error) => return Err(error.into()),
        },
        None => None,
    };
    let lease = match made_for {
        Some(lease) => Some(lease),
        None => live_leases(w, resource).await?.into_iter().next(),
    };
    Ok(match lease {
        Some(lease) => Shape::of(&lease.resource_type, &lease.attributes),
        None => Shape::of(&resource.resource_type, &Default::default()),
    })
}

/// Consumes queued commands in order up to the first reclaim, which is decided inside the
/// transaction (is the resource still idle?); commands after it wait for the next step.
fn consume_commands(resource: &Resource, commands: &[crate::store::Command]) -> Plan {
    let reclaim_at = commands.iter().position(|c| c.kind == CommandKind::Reclaim);
    let (releases, rest) = commands.split_at(reclaim_at.unwrap_or(commands.len()));
    let mut status = resource.status;
    let mut plan = consume(releases, |command| {
        if !status.is_releasable() {
            return Decision::Ignore(format!("the resource is already {status}"));
        }
        status = ResourceStatus::Released;
        Decision::Apply(vec![
            Write::ResourceStatus {
                resource: resource.id.into(),
                status,
            },
            Write::Log {
                object: resource.id.into(),
                kind: "resource.released".into(),
                message: format!("released by {}", command.author),
            },
            Write::released(resource.id, &command.author),
        ])
    });
    if let (Some(reclaim), true) = (rest.first(), releases.is_empty()) {
        plan.push(Write::Reclaim {
            resource: resource.id,
            command: reclaim.id,
            author: reclaim.author.clone(),
        });
    }
    plan
}

/// Pending → active through the blueprint's `activate-resource`.
async fn activate(w: &Workers, held: &Held, resource: Resource) -> Result<Next, RunError> {
    let blueprint = w.store.blueprint_get(resource.blueprint_id).await?;
    let call = HookCall {
        blueprint: blueprint.clone(),
        hook: Hook::ActivateResource,
        resource: Some(resource.clone()),
        lease: None,
    };
    let supporting = w.supporting(&resource).await?;
    let called = w.call_hook(held, call, &mut Plan::new()).await?;
    let mut on_done = vec![
        Write::ResourceStatus {
            resource: resource.id.into(),
            status: ResourceStatus::Active,
        },
        Write::Log {
            object: resource.id.into(),
            kind: "resource.activated".into(),
            message: "active".into(),
        },
    ];
    // Leases waiting on this resource, and leases waiting for any resource of its type.
    on_done.push(Write::WakeHolders {
        resource: resource.id,
    });
    on_done.push(Write::WakeWaiting {
        resource_type: resource.resource_type.clone(),
    });
    on_done.extend(w.blueprint_worked(&blueprint, &called));
    let settle = resource_settle(w, &resource, &blueprint, "activation", &supporting);
    let shape = request_shape(w, &resource).await?;
    let on_fail = |reason: &str, blame| {
        let mut writes = broken(&resource, reason);
        writes.extend(w.blueprint_failed(&blueprint, reason, blame, shape));
        writes
    };
    let (plan, next) = settle.plan(called, on_done, on_fail, w.store.now());
    held.apply(&plan).await?;
    Ok(next)
}

fn resource_settle<'a>(
    w: &Workers,
    resource: &Resource,
    blueprint: &'a Blueprint,
    phase: &'a str,
    supporting: &'a [crate::domain::SupportingLease],
) -> Settle<'a> {
    Settle {
        subject: Subject {
            target: resource.id.into(),
            kind: "resource",
            blueprint,
        },
        phase,
        supporting,
        min_yield: w.config.min_yield,
    }
}

/// Released or broken → destroyed: first its leases go, then the blueprint tears it down, then
/// its supporting leases are released through their own queues.
async fn destroy(w: &Workers, held: &Held, resource: Resource) -> Result<Next, RunError> {
    let leases = live_leases(w, &resource).await?;
    if !leases.is_empty() {
        let plan = release_leases(&resource, &leases);
        if !plan.is_empty() {
            held.apply(&plan).await?;
        }
        // Each lease wakes the resource when it is destroyed; the wait is only a backstop.
        return Ok(Next::Wait(Some(w.after(w.config.resource_wait))));
    }
    let blueprint = w.store.blueprint_get(resource.blueprint_id).await?;
    let supporting = w.supporting(&resource).await?;
    let call = HookCall {
        blueprint: blueprint.clone(),
        hook: Hook::DestroyResource,
        resource: Some(resource.clone()),
        lease: None,
    };
    let called = w.call_hook(held, call, &mut Plan::new()).await?;
    let settle = resource_settle(w, &resource, &blueprint, "destroy", &supporting);
    let (mut plan, next) = settle.plan(called, Vec::new(), |_, _| Vec::new(), w.store.now());
    if let Next::Wait(at) = next {
        held.apply(&plan).await?;
        return Ok(Next::Wait(at));
    }
    plan.push(Write::ResourceStatus {
        resource: resource.id.into(),
        status: ResourceStatus::Destroyed,
    })
    .push(Write::FreeSlotLocks { owner: resource.id })
    .log(resource.id, "resource.destroyed", "destroyed");
    for lease in w.store.lease_list_supporting(resource.id).await? {
        if lease.status.is_releasable() {
            plan.push(Write::CascadeRelease {
                lease: lease.id,
                author: resource.id.to_string(),
            });
        }
    }
    plan.push(Write::WakeWaiting {
        resource_type: resource.resource_type.clone(),
    });
    // Destroyed: the claim goes back in the same transaction (see `lease::destroy`).
    plan.push(Write::ReleaseClaim { wake_at: None });
    held.apply(&plan).await?;
    Ok(Next::Wait(None))
}

/// Sends release commands to the resource's leases (once each). When the resource broke,
/// leases not yet active are only woken: they go back to pending and find another resource
/// (until three have broken under one lease, which then breaks too).
fn release_leases(resource: &Resource, leases: &[Lease]) -> Plan {
    let mut plan = Plan::new();
    for lease in leases {
        let reacquires =
            resource.status == ResourceStatus::Broken && lease.status != LeaseStatus::Active;
        if reacquires || !lease.status.is_releasable() {
            plan.push(Write::Wake {
                object: lease.id.into(),
            });
            continue;
        }
        plan.push(Write::CascadeRelease {
            lease: lease.id,
            author: resource.id.to_string(),
        });
    }
    plan
}

/// The writes that break a resource, keeping `reason` as its end.
fn broken(resource: &Resource, reason: &str) -> Vec<Write> {
    vec![
        Write::ResourceStatus {
            resource: resource.id.into(),
            status: ResourceStatus::Broken,
        },
        Write::broke(resource.id, reason),
    ]
}

/// The resource failed too many runs: it breaks if it still can (and returns `true`), else it
/// stays as it is; either way the reason is logged.
pub(super) fn give_up(resource: &Resource, why: &str) -> (Plan, bool) {
    let mut plan = Plan::new();
    if resource.status.is_releasable() {
        for write in broken(resource, why) {
            plan.push(write);
        }
        plan.log(resource.id, "resource.gave-up", why);
        return (plan, true);
    }
    plan.log(
        resource.id,
        "resource.gave-up",
        format!("{why}; trying again later (or at the next release)"),
    );
    (plan, false)
}

impl Workers {
    /// The resource's supporting leases, with their interfaces.
    async fn supporting(
        &self,
        resource: &Resource,
    ) -> Result<Vec<crate::domain::SupportingLease>, RunError> {
        self.plugins
            .supporting_leases(self.store.as_ref(), resource)
            .await
    }
}
