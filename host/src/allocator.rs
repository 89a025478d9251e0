//! The allocator: finds or makes a resource for a pending lease.
//!
//! Candidates are the allowed ∩ enabled blueprints that make the lease's resource type. The
//! allocator first tries to acquire an active resource of theirs (`can-acquire-lease`), then to
//! allocate a new one on a blueprint that can (`can-allocate-resource`), then, when every
//! blueprint is at capacity, asks an idle resource to be reclaimed; otherwise the lease waits,
//! and its log says why. A lease no blueprint can ever serve breaks.

use crate::domain::{
    AllocationVerdict, CallContext, LeaseStatus, ResourceSnapshot, ResourceStatus,
};
use crate::lock::Held;
use crate::plugin::{Hook, Plugin};
use crate::store::{self, Blueprint, CommandKind, Lease, Plan, Resource, Target, Write};
use crate::worker::{Next, RunError, Workers};
use rand::seq::SliceRandom;

/// Finds or makes a resource for `lease`, or says why it must wait.
pub async fn allocate(w: &Workers, held: &Held, lease: &Lease) -> Result<Next, RunError> {
    let blueprints = candidates(w, lease).await?;
    if blueprints.is_empty() {
        let why = format!(
            "no enabled, allowed blueprint makes {:?} resources",
            lease.resource_type
        );
        held.apply(&crate::worker::break_lease(
            lease,
            "lease.no-blueprints",
            why,
        ))
        .await?;
        return Ok(Next::Continue);
    }
    let ids: Vec<_> = blueprints.iter().map(|b| b.id).collect();
    let live = w.store.resource_live_of_blueprints(&ids).await?;

    for resource in live.iter().filter(|r| r.status == ResourceStatus::Active) {
        let blueprint = blueprint_of(&blueprints, resource);
        if let Some(next) = try_acquire(w, held, lease, blueprint, resource).await? {
            return Ok(next);
        }
    }

    let mut shuffled: Vec<&Blueprint> = blueprints.iter().collect();
    shuffled.shuffle(&mut rand::rng());
    let mut at_capacity = false;
    for blueprint in shuffled {
        let own: Vec<&Resource> = live
            .iter()
            .filter(|r| r.blueprint_id == blueprint.id)
            .collect();
        let plugin = w.plugin(held, blueprint).await?;
        let ctx = allocation_context(w, blueprint, lease, &own);
        let verdict =
            crate::worker::guarded(held, move || plugin.can_allocate_resource(&ctx)).await?;
        match verdict.map(|c| c.value) {
            Ok(AllocationVerdict::Yes) => {
                if let Some(next) = try_allocate(w, held, lease, blueprint, &own).await? {
                    return Ok(next);
                }
                at_capacity = true;
            }
            Ok(AllocationVerdict::NotNow) => at_capacity = true,
            Ok(AllocationVerdict::Never) => {}
            Err(error) if error.is_temporary() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(blueprint = %blueprint.name, %error, "can-allocate-resource failed");
            }
        }
    }
    if !at_capacity {
        let why = format!(
            "no candidate blueprint can ever allocate a {:?} resource for this lease",
            lease.resource_type
        );
        held.apply(&crate::worker::break_lease(
            lease,
            "lease.allocation-failure",
            why,
        ))
        .await?;
        return Ok(Next::Continue);
    }
    wait_or_reclaim(w, held, lease, &live).await
}

/// Enabled blueprints of the lease's type that the lease allows.
async fn candidates(w: &Workers, lease: &Lease) -> Result<Vec<Blueprint>, RunError> {
    Ok(w.store
        .blueprint_list()
        .await?
        .into_iter()
        .filter(|b| b.enabled && b.resource_type == lease.resource_type)
        .filter(|b| lease.allowed_blueprints.is_empty() || lease.allowed_blueprints.contains(&b.id))
        .collect())
}

fn blueprint_of<'a>(blueprints: &'a [Blueprint], resource: &Resource) -> &'a Blueprint {
    blueprints
        .iter()
        .find(|b| b.id == resource.blueprint_id)
        .expect("live resources come from the candidate blueprints")
}

fn allocation_context(
    w: &Workers,
    blueprint: &Blueprint,
    lease: &Lease,
    own: &[&Resource],
) -> CallContext {
    CallContext {
        config: blueprint.config.clone(),
        now: w.store.now(),
        lease: Some(crate::worker::lease_snapshot(lease)),
        blueprint_resources: own
            .iter()
            .map(|r| crate::worker::resource_snapshot(r))
            .collect(),
        ..CallContext::default()
    }
}

/// Acquires `lease` on `resource` if the blueprint agrees. `None`: try another resource.
async fn try_acquire(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    resource: &Resource,
) -> Result<Option<Next>, RunError> {
    let plugin = w.plugin(held, blueprint).await?;
    let ctx = w
        .context(blueprint, Some(resource), Some(lease), lease.id)
        .await?;
    let check = plugin.clone();
    match crate::worker::guarded(held, move || check.can_acquire_lease(&ctx)).await? {
        Ok(called) if called.value => {}
        Ok(_) => return Ok(None),
        Err(error) if error.is_temporary() => return Err(error.into()),
        Err(error) => {
            tracing::warn!(resource = %resource.id, %error, "can-acquire-lease failed");
            return Ok(None);
        }
    }
    acquire(w, held, lease, blueprint, plugin, resource).await
}

async fn acquire(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    plugin: Plugin,
    resource: &Resource,
) -> Result<Option<Next>, RunError> {
    let call = crate::worker::HookCall {
        blueprint: blueprint.clone(),
        plugin,
        hook: Hook::AcquireLease,
        resource: Some(resource.clone()),
        lease: Some(lease.clone()),
    };
    let called = w.call_hook(held, call, &mut Plan::new()).await?;
    let on_done = vec![
        Write::LeaseAcquire {
            lease: lease.id,
            resource: resource.id.into(),
        },
        Write::Log {
            object: lease.id.into(),
            kind: "lease.acquired".into(),
            message: format!("acquired {} from {}", resource.id, blueprint.name),
        },
    ];
    let broken = vec![Write::LeaseStatus {
        lease: lease.id,
        status: LeaseStatus::Broken,
    }];
    let settle = crate::worker::Settle {
        subject: lease.id.into(),
        kind: "lease",
        phase: "acquisition",
        supporting: &[],
    };
    let (plan, next) = settle.plan(called, on_done, broken, w.store.now());
    if let Next::Wait(_) = next {
        return Ok(None);
    }
    // Acquired on an active resource: activate in the same run, and commit both at once.
    let acquired = crate::worker::planned(lease, &plan);
    let (plan, next) = match (acquired.status, resource.status) {
        (LeaseStatus::Acquired, ResourceStatus::Active) => {
            crate::worker::activation(w, held, acquired, resource.clone(), plan).await?
        }
        _ => (plan, Next::Continue),
    };
    match held.apply(&plan).await {
        Ok(_) => Ok(Some(next)),
        Err(store::Error::Precondition(_) | store::Error::SlotLockBusy { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Makes a new resource on `blueprint` and acquires the lease on it. `None`: try elsewhere.
async fn try_allocate(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    own: &[&Resource],
) -> Result<Option<Next>, RunError> {
    let plugin = w.plugin(held, blueprint).await?;
    let mut ctx = allocation_context(w, blueprint, lease, own);
    ctx.resource = Some(ResourceSnapshot {
        id: String::new(),
        resource_type: lease.resource_type.clone(),
        status: ResourceStatus::Pending,
        attributes: Default::default(),
        until: None,
    });
    let allocating = plugin.clone();
    let called =
        match crate::worker::guarded(held, move || allocating.step(Hook::AllocateResource, &ctx))
            .await?
        {
            Ok(called) => crate::worker::Called::Step(called.value, called.output, false),
            Err(error) if error.is_temporary() => return Err(error.into()),
            Err(error) => crate::worker::Called::Failed(error.to_string()),
        };
    let new = Target::Inserted(0);
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint: blueprint.id,
        resource_type: lease.resource_type.clone(),
    });
    let on_done = vec![Write::Log {
        object: new,
        kind: "resource.allocated".into(),
        message: format!("allocated by {} for {}", blueprint.name, lease.id),
    }];
    let settle = crate::worker::Settle {
        subject: new,
        kind: "resource",
        phase: "allocation",
        supporting: &[],
    };
    let (step_plan, next) = settle.plan(called, on_done, Vec::new(), w.store.now());
    if next != Next::Continue
        || step_plan
            .writes()
            .iter()
            .any(|w| matches!(w, Write::Log { kind, .. } if kind == "resource.allocation-failure"))
    {
        return allocation_failed(held, lease, blueprint, next, &step_plan).await;
    }
    for write in step_plan.writes() {
        plan.push(write.clone());
    }
    let resource_id = match held.apply(&plan).await {
        Ok(inserted) => inserted[0],
        Err(store::Error::SlotLockBusy { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    w.queue.wake_workers();
    let resource = w.store.resource_get(resource_id).await?;
    acquire(w, held, lease, blueprint, plugin, &resource).await
}

/// A yield means "not now"; a failure breaks the lease, naming the blueprint.
async fn allocation_failed(
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    next: Next,
    step_plan: &Plan,
) -> Result<Option<Next>, RunError> {
    if next != Next::Continue {
        return Ok(None);
    }
    let reason = step_plan
        .writes()
        .iter()
        .find_map(|w| match w {
            Write::Log { kind, message, .. } if kind == "resource.allocation-failure" => {
                Some(message.clone())
            }
            _ => None,
        })
        .unwrap_or_default();
    let why = format!("{} failed to allocate a resource: {reason}", blueprint.name);
    held.apply(&crate::worker::break_lease(
        lease,
        "lease.allocation-failure",
        why,
    ))
    .await?;
    Ok(Some(Next::Continue))
}

/// Every candidate is at capacity: reclaim an idle resource if there is one, then wait.
async fn wait_or_reclaim(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    live: &[Resource],
) -> Result<Next, RunError> {
    let idle_since = w
        .store
        .now()
        .saturating_sub(w.config.reclaim_idle.as_millis() as u64);
    let mut plan = Plan::new();
    let mut reclaimed = None;
    for resource in live
        .iter()
        .filter(|r| r.status == ResourceStatus::Active && r.updated_at <= idle_since)
    {
        let leases = w.store.lease_list_on_resource(resource.id).await?;
        if leases
            .iter()
            .all(|l| l.status == crate::domain::LeaseStatus::Destroyed)
        {
            reclaimed = Some(resource.id);
            break;
        }
    }
    match reclaimed {
        Some(resource) => {
            plan.push(Write::PostCommand {
                target: resource,
                kind: CommandKind::Reclaim,
                author: lease.id.to_string(),
            });
            plan.log(
                lease.id,
                "lease.waiting-for-reclamation",
                format!("asked to reclaim idle {resource}"),
            );
        }
        None => {
            plan.log(
                lease.id,
                "lease.waiting-for-resources",
                format!(
                    "every blueprint for {:?} is at capacity; waiting",
                    lease.resource_type
                ),
            );
        }
    }
    held.apply(&plan).await?;
    Ok(Next::Wait(Some(w.after(w.config.resource_wait))))
}
