//! The allocator: finds or makes a resource for a pending lease.
//!
//! Candidates are the allowed ∩ enabled blueprints that make the lease's resource type. The
//! allocator first goes back to the resource an unfinished acquisition was about (a yield from
//! `acquire-lease` is a wait on that resource), then tries to acquire an active resource of a
//! candidate (`can-acquire-lease`), then to allocate a new one on a blueprint that can
//! (`can-allocate-resource`), then, when every blueprint is at capacity, asks an idle resource
//! to be reclaimed; otherwise the lease sleeps until capacity of its type appears, and its log
//! says why. A blueprint that keeps failing is left alone while it backs off, and a lease no
//! blueprint can ever serve breaks.

use crate::domain::{
    AllocationVerdict, CallContext, LeaseStatus, ResourceSnapshot, ResourceStatus,
};
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{self, Blueprint, CommandKind, Lease, Plan, Resource, Target, Write};
use crate::worker::{Next, RunError, Workers};
use rand::seq::SliceRandom;

/// What the candidate blueprints said, when none gave the lease a resource.
#[derive(Default)]
struct Refusals {
    /// Some blueprint could make one later (at capacity, backing off, rate-limited).
    later: bool,
    /// Why, for the lease's log.
    reasons: Vec<String>,
    /// The earliest time a blueprint may be asked again (it backs off, or yielded).
    retry_at: Option<u64>,
}

/// Finds or makes a resource for `lease`, or says why it must wait.
pub async fn allocate(w: &Workers, held: &Held, lease: &Lease) -> Result<Next, RunError> {
    let generation = w.store.capacity_generation(&lease.resource_type).await?;
    let all = w.store.blueprint_list().await?;
    let requester = requester(w, lease, &all).await?;
    let blueprints = candidates(&all, lease, requester);
    if blueprints.is_empty() {
        let why = requester
            .and_then(|r| crate::authorization::refusal(r, &lease.resource_type, &all))
            .unwrap_or_else(|| {
                format!(
                    "no enabled, allowed blueprint makes {:?} resources",
                    lease.resource_type
                )
            });
        held.apply(&crate::worker::break_lease(
            lease,
            "lease.no-blueprints",
            why,
        ))
        .await?;
        return Ok(Next::Continue);
    }
    if let Some(next) = resume_acquisition(w, held, lease, &blueprints).await? {
        return Ok(next);
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
    let mut refusals = Refusals::default();
    let now = w.store.now();
    for blueprint in shuffled {
        if blueprint.is_backing_off(now) {
            refusals.later = true;
            refusals.retry_at = refusals
                .retry_at
                .min(blueprint.retry_at)
                .or(blueprint.retry_at);
            refusals.reasons.push(backing_off(blueprint));
            continue;
        }
        let own: Vec<&Resource> = live
            .iter()
            .filter(|r| r.blueprint_id == blueprint.id)
            .collect();
        let ctx = allocation_context(w, blueprint, lease, &own);
        let verdict = w
            .call(blueprint, Hook::CanAllocateResource, |plugin| async move {
                plugin.can_allocate_resource(&ctx).await
            })
            .await?;
        match verdict.map(|c| c.value) {
            Ok(AllocationVerdict::Yes) => {
                match try_allocate(w, held, lease, blueprint, &own).await? {
                    Allocated::Done(next) => return Ok(next),
                    Allocated::NotNow(reason, retry_at) => {
                        refusals.later = true;
                        refusals.reasons.push(reason);
                        refusals.retry_at = refusals.retry_at.min(retry_at).or(retry_at);
                    }
                }
            }
            Ok(AllocationVerdict::NotNow) => {
                refusals.later = true;
                refusals
                    .reasons
                    .push(format!("{} is at capacity", blueprint.name));
            }
            Ok(AllocationVerdict::Never) => {}
            Err(error) if error.is_temporary() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(blueprint = %blueprint.name, %error, "can-allocate-resource failed");
            }
        }
    }
    if !refusals.later {
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
    wait_or_reclaim(w, held, lease, &live, refusals, generation).await
}

fn backing_off(blueprint: &Blueprint) -> String {
    let state = if blueprint.is_failing() {
        "is failing"
    } else {
        "failed"
    };
    format!(
        "{} {state} ({} allocations or activations in a row; the last: {}) and is not used \
         until {}",
        blueprint.name,
        blueprint.failures,
        blueprint.last_failure.as_deref().unwrap_or("-"),
        crate::domain::format_time(blueprint.retry_at.unwrap_or_default())
    )
}

/// For a supporting lease, the blueprint of the resource that requested it.
async fn requester<'a>(
    w: &Workers,
    lease: &Lease,
    all: &'a [Blueprint],
) -> Result<Option<&'a Blueprint>, RunError> {
    let Some(parent) = lease.parent_resource_id else {
        return Ok(None);
    };
    let parent = w.store.resource_get(parent).await?;
    Ok(all.iter().find(|b| b.id == parent.blueprint_id))
}

/// Enabled blueprints of the lease's type that the lease allows and, for a supporting lease,
/// that its requester is authorized to use.
fn candidates(all: &[Blueprint], lease: &Lease, requester: Option<&Blueprint>) -> Vec<Blueprint> {
    all.iter()
        .filter(|b| b.enabled && b.resource_type == lease.resource_type)
        .filter(|b| lease.allowed_blueprints.is_empty() || lease.allowed_blueprints.contains(&b.id))
        .filter(|b| requester.is_none_or(|r| crate::authorization::may_use(r, b)))
        .cloned()
        .collect()
}

fn blueprint_of<'a>(blueprints: &'a [Blueprint], resource: &Resource) -> &'a Blueprint {
    blueprints
        .iter()
        .find(|b| b.id == resource.blueprint_id)
        .expect("live resources come from the candidate blueprints")
}

/// Goes back to the resource an unfinished acquisition is about (one made for the lease is
/// remembered from the moment it is inserted): acquires it while it is being set up or
/// active, counts it against the lease if it broke first (`worker::resource_broke`: a refused
/// resource breaks the lease rather than make another), and otherwise forgets it. `None`:
/// allocate as usual.
async fn resume_acquisition(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprints: &[Blueprint],
) -> Result<Option<Next>, RunError> {
    let Some(id) = lease.acquiring else {
        return Ok(None);
    };
    let resource = w.store.resource_get(id).await?;
    let blueprint = blueprints.iter().find(|b| b.id == resource.blueprint_id);
    if let (ResourceStatus::Pending | ResourceStatus::Active, Some(blueprint)) =
        (resource.status, blueprint)
        && let Some(next) = acquire(w, held, lease, blueprint, &resource).await?
    {
        return Ok(Some(next));
    }
    // The acquisition may have failed because the resource broke while the hook ran.
    if crate::worker::broke(&w.store.resource_get(id).await?) {
        return crate::worker::resource_broke(w, held, lease, id)
            .await
            .map(Some);
    }
    let mut forget = Plan::new();
    forget.push(Write::SetAcquiring {
        lease: lease.id,
        resource: None,
    });
    held.apply(&forget).await?;
    Ok(Some(Next::Continue))
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
        depth: lease.depth,
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
    let ctx = w
        .context(blueprint, Some(resource), Some(lease), lease.id)
        .await?;
    let verdict = w
        .call(blueprint, Hook::CanAcquireLease, |plugin| async move {
            plugin.can_acquire_lease(&ctx).await
        })
        .await?;
    match verdict {
        Ok(called) if called.value => {}
        Ok(_) => return Ok(None),
        Err(error) if error.is_temporary() => return Err(error.into()),
        Err(error) => {
            tracing::warn!(resource = %resource.id, %error, "can-acquire-lease failed");
            return Ok(None);
        }
    }
    acquire(w, held, lease, blueprint, resource).await
}

/// `acquire-lease` of `lease` on `resource`. On an active resource the lease is activated in
/// the same run and both commit at once. A yield waits on this resource: the acquisition
/// (with its exec results) is remembered, and the next run comes back here. `None`: the
/// resource went away or a slot lock is taken; try elsewhere.
async fn acquire(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    resource: &Resource,
) -> Result<Option<Next>, RunError> {
    let call = crate::worker::HookCall {
        blueprint: blueprint.clone(),
        hook: Hook::AcquireLease,
        resource: Some(resource.clone()),
        lease: Some(lease.clone()),
    };
    let mut unsaved = Plan::new();
    unsaved.push(Write::SetAcquiring {
        lease: lease.id,
        resource: Some(resource.id.into()),
    });
    let called = w.call_hook(held, call, &mut unsaved).await?;
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
    let broken = |reason: &str, _| crate::worker::broken_lease(lease, reason);
    let settle = crate::worker::Settle {
        subject: crate::worker::Subject {
            target: lease.id.into(),
            kind: "lease",
            blueprint,
        },
        phase: "acquisition",
        supporting: &[],
        min_yield: w.config.min_yield,
    };
    let (plan, next) = settle.plan(called, on_done, broken, w.store.now());
    let plan = match (
        next,
        crate::worker::planned(lease, &plan).status,
        resource.status,
    ) {
        // Acquired on an active resource: activate in the same run, and commit both at once,
        // unless the acquisition takes a slot lock: that commits first, so that a busy lock
        // sends the lease elsewhere before activation runs any exec.
        (Next::Continue, LeaseStatus::Acquired, ResourceStatus::Active) => {
            let acquired = crate::worker::planned(lease, &plan);
            let mut unsaved = std::mem::take(&mut unsaved);
            unsaved.append(plan);
            if unsaved.takes_slot_locks() {
                if commit(held, &unsaved, Next::Continue).await?.is_none() {
                    return Ok(None);
                }
                unsaved = Plan::new();
            }
            let (plan, next) =
                crate::worker::activation(w, held, acquired, resource.clone(), blueprint, unsaved)
                    .await?;
            return commit(held, &plan, next).await;
        }
        _ => plan,
    };
    commit(held, unsaved.append(plan), next).await
}

/// Commits an acquisition's plan; a resource gone or a slot lock taken sends the lease
/// elsewhere (`None`).
async fn commit(held: &Held, plan: &Plan, next: Next) -> Result<Option<Next>, RunError> {
    match held.apply(plan).await {
        Ok(_) => Ok(Some(next)),
        Err(store::Error::Precondition(_) | store::Error::SlotLockBusy { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// What [`try_allocate`] came to.
enum Allocated {
    /// A resource was made (or the lease broke): go on.
    Done(Next),
    /// Not now, and why: a slot lock was taken, the blueprint yielded (until when), or it is at
    /// one of its limits (resources being set up, its resource bucket: until when).
    NotNow(String, Option<u64>),
}

/// Makes a new resource on `blueprint` and acquires the lease on it.
async fn try_allocate(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    own: &[&Resource],
) -> Result<Allocated, RunError> {
    if let Some(not_now) = no_room(w, held, blueprint).await? {
        return Ok(not_now);
    }
    let mut ctx = allocation_context(w, blueprint, lease, own);
    ctx.resource = Some(ResourceSnapshot {
        id: String::new(),
        resource_type: lease.resource_type.clone(),
        status: ResourceStatus::Pending,
        attributes: Default::default(),
        until: None,
    });
    let called = match w
        .call_step(held, blueprint, Hook::AllocateResource, lease.id, ctx)
        .await?
    {
        Ok(called) => crate::worker::Called::Step(called.value, called.output, false),
        Err(error) if error.is_temporary() => return Err(error.into()),
        Err(error) => crate::worker::Called::failed(&error),
    };
    let new = Target::Inserted(0);
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint: blueprint.id,
        resource_type: lease.resource_type.clone(),
        depth: lease.depth,
        made_for: held.claim().tenant.clone(),
        made_for_lease: Some(lease.id),
        limits: blueprint.limits.clone(),
    })
    // Remembered at once: should the new resource break before the lease acquires it (its
    // worker may run first), or the daemon stop in between, the lease goes back to it
    // (`resume_acquisition`) instead of making another.
    .push(Write::SetAcquiring {
        lease: lease.id,
        resource: Some(new),
    });
    let on_done = vec![Write::Log {
        object: new,
        kind: "resource.allocated".into(),
        message: format!("allocated by {} for {}", blueprint.name, lease.id),
    }];
    // An allocation alone has served no one: only an activation ends a failure streak
    // (`worker::blame`), or a blueprint whose activations always fail would never back off.
    let mut failure = None;
    let settle = crate::worker::Settle {
        subject: crate::worker::Subject {
            target: new,
            kind: "resource",
            blueprint,
        },
        phase: "allocation",
        supporting: &[],
        min_yield: w.config.min_yield,
    };
    let (step_plan, next) = settle.plan(
        called,
        on_done,
        |reason, blame| {
            failure = Some((reason.to_string(), blame));
            Vec::new()
        },
        w.store.now(),
    );
    if let Some((reason, blame)) = failure {
        return allocation_failed(w, held, lease, blueprint, &reason, blame).await;
    }
    if let Next::Wait(at) = next {
        let why = format!("{} yielded its allocation", blueprint.name);
        return Ok(Allocated::NotNow(why, at));
    }
    // The step's writes were made for this plan (the new resource is its insert #0).
    for write in step_plan.writes() {
        plan.push(write.clone());
    }
    let resource_id = match held.apply(&plan).await {
        Ok(inserted) => inserted[0],
        Err(error @ store::Error::SlotLockBusy { .. }) => {
            return Ok(Allocated::NotNow(error.to_string(), None));
        }
        Err(store::Error::Limited {
            reason, retry_at, ..
        }) => return Ok(Allocated::NotNow(reason, retry_at)),
        Err(error) => return Err(error.into()),
    };
    w.queue.wake_workers();
    let resource = w.store.resource_get(resource_id).await?;
    Ok(Allocated::Done(
        acquire(w, held, lease, blueprint, &resource)
            .await?
            .unwrap_or(Next::Continue),
    ))
}

/// Why not now, when `blueprint` is at one of its limits on making resources for this lease's
/// tenant (`limits::room`): a lease waiting on a limit costs no blueprint call (and no step in
/// the audit trail) until there is room. The inserting transaction decides for good.
async fn no_room(
    w: &Workers,
    held: &Held,
    blueprint: &Blueprint,
) -> Result<Option<Allocated>, RunError> {
    let tenant = &held.claim().tenant;
    let setup = w.store.resource_setup(blueprint.id, tenant).await?;
    let Err(no_room) = crate::limits::room(&blueprint.limits, setup, w.store.now() as i64) else {
        return Ok(None);
    };
    crate::metrics::global().limit_refused(&blueprint.name, no_room.limit());
    let reason = no_room.reason(&blueprint.name, &blueprint.limits, setup, tenant);
    let retry_at = match no_room {
        crate::limits::NoRoom::Bucket { retry_at } => retry_at.map(|at| at as u64),
        crate::limits::NoRoom::SettingUp { .. } => None,
    };
    Ok(Some(Allocated::NotNow(reason, retry_at)))
}

/// A failure breaks the lease, naming the blueprint, and counts against the blueprint when
/// `blame` says so (`worker::blame`).
async fn allocation_failed(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    blueprint: &Blueprint,
    reason: &str,
    blame: crate::worker::Blame,
) -> Result<Allocated, RunError> {
    let why = format!("{} failed to allocate a resource: {reason}", blueprint.name);
    let mut plan = crate::worker::break_lease(lease, "lease.allocation-failure", why);
    let shape = crate::worker::Shape::of(&lease.resource_type, &lease.attributes);
    if let Some(write) = w.blueprint_failed(blueprint, reason, blame, shape) {
        plan.push(write);
    }
    held.apply(&plan).await?;
    Ok(Allocated::Done(Next::Continue))
}

/// Every candidate is at capacity: reclaim an idle resource if there is one, then sleep until
/// capacity of the type appears (the generation read at the start catches any that appeared
/// meanwhile), a backing-off blueprint may be used again, or the backstop passes.
async fn wait_or_reclaim(
    w: &Workers,
    held: &Held,
    lease: &Lease,
    live: &[Resource],
    refusals: Refusals,
    generation: i64,
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
        if w.store
            .lease_list_on_resource(resource.id)
            .await?
            .is_empty()
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
            plan.push(Write::LogIfNew {
                object: lease.id,
                kind: "lease.waiting-for-resources".into(),
                message: format!(
                    "no resource for {:?} now ({}); waiting",
                    lease.resource_type,
                    refusals.reasons.join("; ")
                ),
            });
        }
    }
    plan.push(Write::WaitForCapacity {
        lease: lease.id,
        resource_type: lease.resource_type.clone(),
        seen: generation,
    });
    held.apply(&plan).await?;
    let backstop = w.after(w.config.resource_wait);
    Ok(Next::Wait(Some(
        refusals.retry_at.map_or(backstop, |at| at.min(backstop)),
    )))
}
