//! The resource state machine: pending → active → released → destroyed (or broken).

use super::hooks::{Decision, HookCall, Settle, consume};
use super::{Next, RunError, Workers};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{CommandKind, Lease, Plan, Resource, Write};

/// How many waiting leases a change of capacity wakes at once.
const WAKE_WAITING_LEASES: usize = 64;

/// One step of a resource's life.
pub(super) async fn step(w: &Workers, held: &Held) -> Result<Next, RunError> {
    let resource = w.store.resource_get(held.object()).await?;
    let commands = w.queued_commands(resource.id).await?;
    if !commands.is_empty() {
        let leases = live_leases(w, &resource).await?;
        held.apply(&consume_commands(&resource, &leases, &commands))
            .await?;
        return Ok(Next::Continue);
    }
    if w.expire(held, resource.until, resource.status.is_releasable())
        .await?
    {
        return Ok(Next::Continue);
    }
    match resource.status {
        ResourceStatus::Pending => activate(w, held, resource).await,
        ResourceStatus::Active => Ok(Next::Wait(resource.until)),
        ResourceStatus::Released | ResourceStatus::Broken => destroy(w, held, resource).await,
        ResourceStatus::Destroyed => Ok(Next::Wait(None)),
    }
}

async fn live_leases(w: &Workers, resource: &Resource) -> Result<Vec<Lease>, RunError> {
    let leases = w.store.lease_list_on_resource(resource.id).await?;
    Ok(leases
        .into_iter()
        .filter(|l| l.status != LeaseStatus::Destroyed)
        .collect())
}

fn consume_commands(
    resource: &Resource,
    leases: &[Lease],
    commands: &[crate::store::Command],
) -> Plan {
    let mut status = resource.status;
    let release = |status: ResourceStatus, kind: &str, message: String| {
        vec![
            Write::ResourceStatus {
                resource: resource.id.into(),
                status,
            },
            Write::Log {
                object: resource.id.into(),
                kind: kind.into(),
                message,
            },
        ]
    };
    consume(commands, |command| match command.kind {
        CommandKind::Release if status.is_releasable() => {
            status = ResourceStatus::Released;
            let by = format!("released by {}", command.author);
            Decision::Apply(release(status, "resource.released", by))
        }
        CommandKind::Reclaim if status == ResourceStatus::Active && leases.is_empty() => {
            status = ResourceStatus::Released;
            let by = format!("reclaimed by {}", command.author);
            Decision::Apply(release(status, "resource.reclaim", by))
        }
        CommandKind::Reclaim if status == ResourceStatus::Active => {
            let ids: Vec<String> = leases.iter().map(|l| l.id.to_string()).collect();
            Decision::Ignore(format!("the resource is in use by {}", ids.join(", ")))
        }
        _ => Decision::Ignore(format!("the resource is already {status}")),
    })
}

/// Pending → active through the blueprint's `activate-resource`.
async fn activate(w: &Workers, held: &Held, resource: Resource) -> Result<Next, RunError> {
    let blueprint = w.store.blueprint_get(resource.blueprint_id).await?;
    let plugin = w.plugin(held, &blueprint).await?;
    let call = HookCall {
        blueprint,
        plugin,
        hook: Hook::ActivateResource,
        resource: Some(resource.clone()),
        lease: None,
    };
    let supporting = w.context_supporting(&resource).await?;
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
    for lease in live_leases(w, &resource).await? {
        on_done.push(Write::Wake {
            object: lease.id.into(),
        });
    }
    on_done.extend(wake_waiting_leases(w, &resource.resource_type).await?);
    let settle = Settle {
        subject: resource.id.into(),
        kind: "resource",
        phase: "activation",
        supporting: &supporting,
    };
    let (plan, next) = settle.plan(called, on_done, broken(&resource), w.store.now());
    held.apply(&plan).await?;
    Ok(next)
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
    let plugin = w.plugin(held, &blueprint).await?;
    let supporting = w.context_supporting(&resource).await?;
    let call = HookCall {
        blueprint,
        plugin,
        hook: Hook::DestroyResource,
        resource: Some(resource.clone()),
        lease: None,
    };
    let called = w.call_hook(held, call, &mut Plan::new()).await?;
    let settle = Settle {
        subject: resource.id.into(),
        kind: "resource",
        phase: "destroy",
        supporting: &supporting,
    };
    let (mut plan, next) = settle.plan(called, Vec::new(), Vec::new(), w.store.now());
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
    for write in wake_waiting_leases(w, &resource.resource_type).await? {
        plan.push(write);
    }
    // Destroyed: the claim goes back in the same transaction (see `lease::destroy`).
    plan.push(Write::ReleaseClaim { wake_at: None });
    held.apply(&plan).await?;
    Ok(Next::Wait(None))
}

/// Sends release commands to the resource's leases (once each). When the resource broke,
/// leases not yet active are only woken: they go back to pending and find another resource.
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

/// Wakes leases waiting for a resource of this type (capacity appeared or was freed).
async fn wake_waiting_leases(w: &Workers, resource_type: &str) -> Result<Vec<Write>, RunError> {
    let waiting = w
        .store
        .lease_list_waiting(resource_type, WAKE_WAITING_LEASES)
        .await?;
    Ok(waiting
        .into_iter()
        .map(|lease| Write::Wake {
            object: lease.into(),
        })
        .collect())
}

fn broken(resource: &Resource) -> Vec<Write> {
    vec![Write::ResourceStatus {
        resource: resource.id.into(),
        status: ResourceStatus::Broken,
    }]
}

impl Workers {
    async fn context_supporting(
        &self,
        resource: &Resource,
    ) -> Result<Vec<crate::domain::SupportingLease>, RunError> {
        let blueprint = self.store.blueprint_get(resource.blueprint_id).await?;
        Ok(self
            .context(&blueprint, Some(resource), None, resource.id)
            .await?
            .supporting_leases)
    }
}
