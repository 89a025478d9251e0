//! The conformance suite every [`Store`] backend must pass, in the manner of River's
//! `riverdrivertest`: [`exercise`] runs the same checks, named after the store methods, against
//! fresh stores from a factory. The clock is manual so expiry can be tested without sleeping.

use super::{
    BlueprintSwitch, Claim, Command, CommandFilter, CommandKind, EndKind, Error, ListQuery,
    ManualClock, NewBlueprint, NewLease, ObjectId, Plan, PlanToApply, Release, StepRecord, Store,
    Target, Write,
};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::limits::{Limit, Limits};
use crate::scheduler::Load;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);

/// Runs every check against stores made by `open`, each on a fresh database.
pub async fn exercise<F, Fut>(open: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for check in CHECKS {
        let clock = ManualClock::new(1_700_000_000_000);
        check(open(clock.clone()).await, clock).await;
    }
}

/// One check of the suite, on a fresh store and its clock.
type Check = fn(Arc<dyn Store>, Arc<ManualClock>) -> Pin<Box<dyn Future<Output = ()>>>;

/// Every check, in the order they run.
const CHECKS: &[Check] = &[
    |store, clock| Box::pin(blueprint_insert_refuses_a_taken_name(store, clock)),
    |store, clock| Box::pin(lease_insert_queues_each_lease(store, clock)),
    |store, clock| Box::pin(command_post_wakes_and_refuses_the_destroyed(store, clock)),
    |store, clock| Box::pin(work_item_claim_coalesces_posts(store, clock)),
    |store, clock| {
        Box::pin(work_item_release_keeps_a_post_made_during_a_run(
            store, clock,
        ))
    },
    |store, clock| Box::pin(work_item_release_schedules_the_next_wake(store, clock)),
    |store, clock| Box::pin(work_item_claim_takes_back_expired_claims(store, clock)),
    |store, clock| Box::pin(apply_is_fenced_once_the_claim_is_taken_over(store, clock)),
    |store, clock| Box::pin(apply_is_all_or_nothing(store, clock)),
    |store, clock| Box::pin(apply_inserts_and_refers_to_new_objects(store, clock)),
    |store, clock| Box::pin(apply_refuses_to_acquire_a_dead_resource(store, clock)),
    |store, clock| {
        Box::pin(apply_can_give_the_claim_back_in_the_same_transaction(
            store, clock,
        ))
    },
    |store, clock| {
        Box::pin(apply_cascades_a_release_only_when_it_would_change_something(store, clock))
    },
    |store, clock| Box::pin(work_item_claim_takes_expired_claims_first(store, clock)),
    |store, clock| Box::pin(work_item_claim_ignores_a_wall_clock_step(store, clock)),
    |store, clock| Box::pin(command_post_is_all_or_nothing(store, clock)),
    |store, clock| Box::pin(command_post_refuses_a_supporting_lease(store, clock)),
    |store, clock| Box::pin(apply_reclaims_only_an_idle_resource(store, clock)),
    |store, clock| Box::pin(apply_wakes_waiting_leases_in_request_order(store, clock)),
    |store, clock| {
        Box::pin(apply_wakes_at_once_a_lease_that_missed_capacity(
            store, clock,
        ))
    },
    |store, clock| {
        Box::pin(apply_limits_resources_by_bucket_and_setting_up(
            store, clock,
        ))
    },
    |store, clock| {
        Box::pin(apply_keeps_a_reserve_for_tenants_with_nothing_being_set_up(
            store, clock,
        ))
    },
    |store, clock| {
        Box::pin(apply_limits_the_supporting_leases_a_blueprint_has_waiting(
            store, clock,
        ))
    },
    |store, clock| Box::pin(apply_logs_a_repeated_line_once(store, clock)),
    |store, clock| {
        Box::pin(blueprint_add_kept_counts_what_retention_gives_back(
            store, clock,
        ))
    },
    |store, clock| Box::pin(work_item_claim_shares_workers_among_tenants(store, clock)),
    |store, clock| {
        Box::pin(lease_insert_refuses_more_waiting_leases_than_an_owner_may_have(store, clock))
    },
    |store, clock| {
        Box::pin(blueprint_change_limits_logs_and_keeps_concurrent_changes(
            store, clock,
        ))
    },
    |store, clock| Box::pin(apply_schedules_a_deadline(store, clock)),
    |store, clock| Box::pin(apply_records_blueprint_failures_and_recovery(store, clock)),
    |store, clock| {
        Box::pin(blueprint_switch_clears_a_back_off_and_wakes_waiting_leases(
            store, clock,
        ))
    },
    |store, clock| Box::pin(apply_nests_supporting_leases_one_deeper(store, clock)),
    |store, clock| {
        Box::pin(apply_forgets_exec_results_of_another_acquisition(
            store, clock,
        ))
    },
    |store, clock| Box::pin(blueprint_change_grants_logs_the_change(store, clock)),
    |store, clock| {
        Box::pin(blueprint_update_switches_component_and_config_and_clears_failures(store, clock))
    },
    |store, clock| {
        Box::pin(blueprint_update_refuses_an_update_prepared_from_a_replaced_version(store, clock))
    },
    |store, clock| Box::pin(lease_list_on_resource_lists_live_leases_only(store, clock)),
    |store, clock| Box::pin(gc_prunes_only_what_finished_before_the_cutoff(store, clock)),
    |store, clock| {
        Box::pin(gc_keeps_the_history_of_live_objects_and_the_registration_audit(store, clock))
    },
    |store, clock| Box::pin(apply_keeps_the_first_end_of_an_object(store, clock)),
    |store, clock| Box::pin(lease_page_filters_and_pages_newest_first(store, clock)),
    |store, clock| Box::pin(counts_count_by_status_and_recent_failures(store, clock)),
    |store, clock| Box::pin(step_list_keeps_the_audit_trail_in_order(store, clock)),
    |store, clock| Box::pin(apply_batch_keeps_each_plan_all_or_nothing(store, clock)),
    |store, clock| Box::pin(lease_with_commands_reads_the_pending_ones(store, clock)),
    |store, clock| Box::pin(installation_secret_is_made_once_and_kept(store, clock)),
    |store, clock| {
        Box::pin(token_insert_keeps_names_unique_among_live_tokens(
            store, clock,
        ))
    },
    |store, clock| Box::pin(daemon_seen_keeps_one_row_per_daemon(store, clock)),
    |store, clock| {
        Box::pin(sessions_last_until_they_expire_end_or_lose_their_token(
            store, clock,
        ))
    },
];

/// Limits too high to stop any growth: what the checks that are not about limits use.
pub fn unlimited() -> Limits {
    limits(&[
        "resources-per-minute=1000000",
        "resource-burst=1000000",
        "setting-up=1000000",
        "pending-supporting=1000000",
    ])
}

/// The default limits with `changes` (`setting-up=4`).
fn limits(changes: &[&str]) -> Limits {
    Limits::with_changes(changes).unwrap()
}

async fn post(
    store: &dyn Store,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
) -> super::Result<Command> {
    let mut commands = store.command_post(&[target], kind, author).await?;
    Ok(commands.remove(0))
}

async fn claim_of(store: &dyn Store, object: ObjectId) -> Claim {
    let claims = store
        .work_item_claim("w", 100, TTL, &Load::default())
        .await
        .unwrap();
    claims
        .into_iter()
        .find(|c| c.object == object)
        .unwrap_or_else(|| panic!("{object} was not due"))
}

/// A resource of `blueprint` inserted (and made `status`) under `claim`.
async fn resource(
    store: &dyn Store,
    claim: &Claim,
    blueprint: ObjectId,
    status: ResourceStatus,
) -> ObjectId {
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint,
        resource_type: "thing".into(),
        depth: 0,
        made_for: "owner:test".into(),
        made_for_lease: made_for_lease(claim),
        limits: unlimited(),
    })
    .push(Write::ResourceStatus {
        resource: Target::Inserted(0),
        status,
    });
    let id = store.apply(claim, &plan, TTL).await.unwrap().inserted[0];
    let made = store.resource_get(id).await.unwrap();
    assert_eq!(
        made.made_for_lease,
        made_for_lease(claim),
        "the lease it was made for"
    );
    id
}

/// The lease a resource inserted under `claim` is made for: the claimed object, if a lease.
fn made_for_lease(claim: &Claim) -> Option<ObjectId> {
    matches!(claim.object, ObjectId::Lease(_)).then_some(claim.object)
}

async fn blueprint(store: &dyn Store, name: &str) -> ObjectId {
    let new = NewBlueprint {
        name: name.into(),
        wasm: b"\0asm".to_vec(),
        digest: "d1".into(),
        component_name: "test".into(),
        resource_type: "thing".into(),
        config: "{}".into(),
        grants: Vec::new(),
    };
    store.blueprint_insert(new).await.unwrap().id
}

async fn lease(store: &dyn Store) -> ObjectId {
    let new = NewLease {
        resource_type: "thing".into(),
        owner: "test".into(),
        ..NewLease::default()
    };
    store.lease_insert(&new, 1).await.unwrap()[0].id
}

async fn claim_one(store: &dyn Store, owner: &str) -> Option<Claim> {
    let mut claims = store
        .work_item_claim(owner, 10, TTL, &Load::default())
        .await
        .unwrap();
    assert!(claims.len() <= 1, "more than one claim: {claims:?}");
    claims.pop()
}

fn idle() -> Release {
    Release::default()
}

async fn blueprint_insert_refuses_a_taken_name(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let id = blueprint(store.as_ref(), "pool").await;
    assert_eq!(store.blueprint_by_name("pool").await.unwrap().id, id);
    let again = NewBlueprint {
        name: "pool".into(),
        wasm: vec![1],
        digest: "d2".into(),
        component_name: "x".into(),
        resource_type: "x".into(),
        config: "{}".into(),
        grants: Vec::new(),
    };
    let error = store.blueprint_insert(again).await.unwrap_err();
    assert!(matches!(error, Error::Conflict(_)), "{error:?}");
    assert_eq!(store.blueprint_list().await.unwrap().len(), 1);
}

async fn lease_insert_queues_each_lease(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let new = NewLease {
        resource_type: "thing".into(),
        attributes: [("repo".to_string(), "x".to_string())].into(),
        owner: "test".into(),
        ..NewLease::default()
    };
    let leases = store.lease_insert(&new, 3).await.unwrap();
    assert_eq!(leases.len(), 3);
    assert!(leases.iter().all(|l| l.status == LeaseStatus::Pending));
    assert_eq!(
        store.lease_get(leases[1].id).await.unwrap().attributes["repo"],
        "x"
    );
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    assert_eq!(claims.len(), 3);
    let logs = store.log_list(Some(leases[0].id), 0, 10).await.unwrap();
    assert_eq!(logs[0].kind, "lease.queued");
}

async fn command_post_wakes_and_refuses_the_destroyed(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    store.work_item_release(&claim, &idle()).await.unwrap();
    assert!(claim_one(store.as_ref(), "w").await.is_none());

    let command = post(store.as_ref(), lease, CommandKind::Release, "alice")
        .await
        .unwrap();
    assert_eq!((command.target, command.consumed_at), (lease, None));
    let claim = claim_one(store.as_ref(), "w")
        .await
        .expect("the post woke the lease");

    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Destroyed,
    });
    store.apply(&claim, &plan, TTL).await.unwrap();
    let error = post(store.as_ref(), lease, CommandKind::Release, "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotReleasable(m) if m.contains("destroyed")),
        "{error:?}"
    );
    let error = post(store.as_ref(), lease, CommandKind::Reclaim, "bob")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotReleasable(_)));
    let missing = post(
        store.as_ref(),
        ObjectId::Lease(999),
        CommandKind::Release,
        "bob",
    )
    .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    let all = store.command_list(&CommandFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "refused posts left no command");
}

async fn work_item_claim_coalesces_posts(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    for author in ["a", "b", "c", "d", "e"] {
        post(store.as_ref(), lease, CommandKind::Release, author)
            .await
            .unwrap();
    }
    let claim = claim_one(store.as_ref(), "w")
        .await
        .expect("one claim for five posts");
    assert_eq!(claim.object, lease);
    assert!(
        store
            .work_item_claim("other", 10, TTL, &Load::default())
            .await
            .unwrap()
            .is_empty()
    );
    store.work_item_release(&claim, &idle()).await.unwrap();
    assert!(
        claim_one(store.as_ref(), "w").await.is_none(),
        "no second run without a new post"
    );
}

async fn work_item_release_keeps_a_post_made_during_a_run(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    post(store.as_ref(), lease, CommandKind::Release, "during")
        .await
        .unwrap();
    post(store.as_ref(), lease, CommandKind::Release, "during-too")
        .await
        .unwrap();
    assert!(
        claim_one(store.as_ref(), "other").await.is_none(),
        "never two runs at once"
    );
    store.work_item_release(&claim, &idle()).await.unwrap();
    let rerun = claim_one(store.as_ref(), "w")
        .await
        .expect("exactly one more run");
    assert_eq!(rerun.token, claim.token + 1);
    store.work_item_release(&rerun, &idle()).await.unwrap();
    assert!(claim_one(store.as_ref(), "w").await.is_none());
}

async fn work_item_release_schedules_the_next_wake(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    let item = store.work_item_get(lease).await.unwrap();
    assert_eq!(
        (item.owner.as_deref(), item.token, item.claim_until),
        (
            Some("w"),
            claim.token,
            Some(store.now() + TTL.as_millis() as u64)
        )
    );
    let at = store.now() + 5_000;
    let release = Release {
        wake_at: Some(at),
        error: Some("busy".into()),
        failed: true,
    };
    store.work_item_release(&claim, &release).await.unwrap();
    let item = store.work_item_get(lease).await.unwrap();
    assert_eq!(
        (item.owner, item.wake_at, item.attempts, item.last_error),
        (None, Some(at), 1, Some("busy".into()))
    );
    assert!(matches!(
        store.work_item_get(ObjectId::Lease(999)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.work_item_next_due().await.unwrap(), Some(at));
    assert!(claim_one(store.as_ref(), "w").await.is_none());
    clock.advance(Duration::from_secs(5));
    assert!(
        claim_one(store.as_ref(), "w").await.is_some(),
        "due after the delay"
    );
}

async fn work_item_claim_takes_back_expired_claims(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    lease(store.as_ref()).await;
    let first = claim_one(store.as_ref(), "crashed").await.unwrap();
    assert!(claim_one(store.as_ref(), "w").await.is_none());
    clock.advance(TTL + Duration::from_millis(1));
    let second = claim_one(store.as_ref(), "w")
        .await
        .expect("an expired claim is claimable");
    assert_eq!(second.token, first.token + 1);
}

/// A store stall is not a lost claim: past its expiry, a claim nobody took over is renewed by
/// its heartbeat (or its next write), since a takeover moves the token on and nobody else can
/// have written. Once taken over, every write, beat and release of the old claim is fenced.
async fn apply_is_fenced_once_the_claim_is_taken_over(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let lease = lease(store.as_ref()).await;
    let stalled = claim_one(store.as_ref(), "stalled").await.unwrap();
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Released,
    });
    clock.advance(TTL + Duration::from_millis(1));
    store.heartbeat_or_fenced(&stalled).await.unwrap();
    assert!(
        claim_one(store.as_ref(), "next").await.is_none(),
        "the renewed claim is live again"
    );

    clock.advance(TTL + Duration::from_millis(1));
    let next = claim_one(store.as_ref(), "next").await.unwrap();
    assert_eq!(next.token, stalled.token + 1);
    assert!(next.taken_over && !stalled.taken_over, "a takeover says so");
    assert!(matches!(
        store.apply(&stalled, &plan, TTL).await,
        Err(Error::Fenced { .. })
    ));
    assert!(matches!(
        store.heartbeat_or_fenced(&stalled).await,
        Err(Error::Fenced { .. })
    ));
    assert!(matches!(
        store.work_item_release(&stalled, &idle()).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Pending
    );

    let mut winning = Plan::new();
    winning.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Active,
    });
    store.apply(&next, &winning, TTL).await.unwrap();
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Active
    );
}

async fn apply_is_all_or_nothing(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let first = lease(store.as_ref()).await;
    let second = lease(store.as_ref()).await;
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let mut take = Plan::new();
    take.push(Write::TakeSlotLocks {
        owner: first.into(),
        names: vec!["host(a)".into()],
    });
    store.apply(&claim_of(first), &take, TTL).await.unwrap();

    let mut plan = Plan::new();
    plan.push(Write::SetAttribute {
        object: second.into(),
        key: "k".into(),
        value: "v".into(),
    })
    .log(second, "lease.test", "should not stay")
    .push(Write::TakeSlotLocks {
        owner: second.into(),
        names: vec!["host(b)".into(), "host(a)".into()],
    });
    let error = store
        .apply(&claim_of(second), &plan, TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::SlotLockBusy { name, holder } if name == "host(a)" && holder == "L1"),
        "{error:?}"
    );
    assert!(store.lease_get(second).await.unwrap().attributes.is_empty());
    let locks = store.slot_lock_list(None).await.unwrap();
    assert_eq!(locks.len(), 1, "host(b) was rolled back: {locks:?}");
    let logs = store.log_list(Some(second), 0, 10).await.unwrap();
    assert!(logs.iter().all(|l| l.kind != "lease.test"));

    let mut free = Plan::new();
    free.push(Write::FreeSlotLocks { owner: first });
    store.apply(&claim_of(first), &free, TTL).await.unwrap();
    store.apply(&claim_of(second), &plan, TTL).await.unwrap();
    assert_eq!(store.slot_lock_list(Some(second)).await.unwrap().len(), 2);
}

async fn apply_inserts_and_refers_to_new_objects(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint,
        resource_type: "thing".into(),
        depth: 0,
        made_for: "owner:test".into(),
        made_for_lease: None,
        limits: unlimited(),
    })
    .push(Write::SetAttribute {
        object: Target::Inserted(0),
        key: "name".into(),
        value: "a".into(),
    })
    .push(Write::LeaseAcquire {
        lease,
        resource: Target::Inserted(0),
    })
    .push(Write::InsertSupportingLease {
        parent: Target::Inserted(0),
        requester: blueprint,
        waiting_limit: 1000,
        key: "host".into(),
        resource_type: "host".into(),
        attributes: Default::default(),
    });
    let inserted = store.apply(&claim, &plan, TTL).await.unwrap().inserted;
    let resource = store.resource_get(inserted[0]).await.unwrap();
    assert_eq!(
        (resource.status, resource.attributes["name"].as_str()),
        (ResourceStatus::Pending, "a")
    );
    let acquired = store.lease_get(lease).await.unwrap();
    assert_eq!(
        (acquired.status, acquired.resource_id),
        (LeaseStatus::Acquired, Some(resource.id))
    );
    let supporting = store.lease_list_supporting(resource.id).await.unwrap();
    assert_eq!(supporting[0].id, inserted[1]);
    assert_eq!(supporting[0].parent_key.as_deref(), Some("host"));
    let due: Vec<ObjectId> = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.object)
        .collect();
    assert!(
        due.contains(&resource.id) && due.contains(&inserted[1]),
        "{due:?}"
    );
}

async fn apply_refuses_to_acquire_a_dead_resource(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    let resource = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Released).await;
    let mut acquire = Plan::new();
    acquire.push(Write::LeaseAcquire {
        lease,
        resource: resource.into(),
    });
    let error = store.apply(&claim, &acquire, TTL).await.unwrap_err();
    assert!(
        matches!(&error, Error::Precondition(m) if m.contains("released")),
        "{error:?}"
    );
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Pending
    );
}

impl dyn Store {
    /// A heartbeat, for the suite: `Fenced` when the claim is not held.
    async fn heartbeat_or_fenced(&self, claim: &Claim) -> super::Result<()> {
        self.work_item_heartbeat(claim, TTL).await
    }
}

async fn apply_can_give_the_claim_back_in_the_same_transaction(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    post(store.as_ref(), lease, CommandKind::Release, "during")
        .await
        .unwrap();
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Active,
    })
    .push(Write::ReleaseClaim { wake_at: None });
    assert!(plan.releases_claim());
    store.apply(&claim, &plan, TTL).await.unwrap();
    assert!(
        matches!(
            store.apply(&claim, &plan, TTL).await,
            Err(Error::Fenced { .. })
        ),
        "given back"
    );
    let rerun = claim_one(store.as_ref(), "w")
        .await
        .expect("the post made during the run is kept");
    let mut last = Plan::new();
    last.push(Write::ReleaseClaim { wake_at: None });
    store.apply(&rerun, &last, TTL).await.unwrap();
    assert!(claim_one(store.as_ref(), "w").await.is_none());
}

async fn apply_cascades_a_release_only_when_it_would_change_something(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let queued = lease(store.as_ref()).await;
    let fresh = lease(store.as_ref()).await;
    let released = lease(store.as_ref()).await;
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    post(store.as_ref(), queued, CommandKind::Release, "holder")
        .await
        .unwrap();
    let mut done = Plan::new();
    done.push(Write::LeaseStatus {
        lease: released,
        status: LeaseStatus::Released,
    });
    store.apply(&claim_of(released), &done, TTL).await.unwrap();

    let mut cascade = Plan::new();
    for lease in [queued, fresh, released] {
        cascade.push(Write::CascadeRelease {
            lease,
            author: "R1".into(),
        });
    }
    store.apply(&claim_of(fresh), &cascade, TTL).await.unwrap();
    let authors = |target| {
        let store = store.clone();
        async move {
            let filter = CommandFilter {
                target: Some(target),
                pending: false,
            };
            store
                .command_list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.author)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        authors(queued).await,
        ["holder"],
        "a queued release is not doubled"
    );
    assert_eq!(authors(fresh).await, ["R1"]);
    assert!(
        authors(released).await.is_empty(),
        "a released lease gets no new command"
    );
}

async fn work_item_claim_takes_expired_claims_first(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let crashed = lease(store.as_ref()).await;
    let first = claim_one(store.as_ref(), "crashed").await.unwrap();
    assert_eq!(first.object, crashed);
    for _ in 0..5 {
        lease(store.as_ref()).await;
    }
    clock.advance(TTL + Duration::from_millis(1));
    let next = store
        .work_item_claim("w", 1, TTL, &Load::default())
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|c| c.object).collect::<Vec<_>>(),
        [crashed],
        "the crashed worker's object comes before the backlog"
    );
}

async fn work_item_claim_ignores_a_wall_clock_step(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    lease(store.as_ref()).await;
    let held = claim_one(store.as_ref(), "w").await.unwrap();
    clock.step_wall(10 * TTL.as_millis() as i64);
    assert!(
        claim_one(store.as_ref(), "other").await.is_none(),
        "a wall clock stepped forward does not expire a live claim"
    );
    store.work_item_heartbeat(&held, TTL).await.unwrap();
    clock.advance(TTL + Duration::from_millis(1));
    assert!(claim_one(store.as_ref(), "other").await.is_some());
}

async fn command_post_is_all_or_nothing(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let (a, b) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let error = store
        .command_post(&[a, ObjectId::Lease(999), b], CommandKind::Release, "cli")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotFound(m) if m.contains("L999")),
        "{error:?}"
    );
    let all = store.command_list(&CommandFilter::default()).await.unwrap();
    assert!(all.is_empty(), "nothing was queued: {all:?}");
    let both = store
        .command_post(&[a, b], CommandKind::Release, "cli")
        .await
        .unwrap();
    assert_eq!(both.iter().map(|c| c.target).collect::<Vec<_>>(), [a, b]);
}

async fn command_post_refuses_a_supporting_lease(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let parent = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let mut plan = Plan::new();
    plan.push(Write::InsertSupportingLease {
        parent: parent.into(),
        requester: blueprint,
        waiting_limit: 1000,
        key: "host".into(),
        resource_type: "host".into(),
        attributes: Default::default(),
    });
    let supporting = store.apply(&claim, &plan, TTL).await.unwrap().inserted[0];
    let error = post(store.as_ref(), supporting, CommandKind::Release, "cli")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotReleasable(m) if m.contains(&format!("supporting lease of {parent}"))),
        "{error:?}"
    );
    let mut cascade = Plan::new();
    cascade.push(Write::CascadeRelease {
        lease: supporting,
        author: parent.to_string(),
    });
    store.apply(&claim, &cascade, TTL).await.unwrap();
    let queued = CommandFilter {
        target: Some(supporting),
        pending: true,
    };
    assert_eq!(
        store.command_list(&queued).await.unwrap().len(),
        1,
        "its resource may"
    );
}

async fn apply_reclaims_only_an_idle_resource(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let holder = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), holder).await;
    let busy = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let idle_one = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let mut acquire = Plan::new();
    acquire.push(Write::LeaseAcquire {
        lease: holder,
        resource: busy.into(),
    });
    store.apply(&claim, &acquire, TTL).await.unwrap();
    for resource in [busy, idle_one] {
        let command = post(store.as_ref(), resource, CommandKind::Reclaim, "L9")
            .await
            .unwrap();
        let mut plan = Plan::new();
        plan.push(Write::Reclaim {
            resource,
            command: command.id,
            author: "L9".into(),
        });
        store.apply(&claim, &plan, TTL).await.unwrap();
    }
    let outcome = |resource| {
        let store = store.clone();
        async move {
            let filter = CommandFilter {
                target: Some(resource),
                pending: false,
            };
            store.command_list(&filter).await.unwrap()[0]
                .outcome
                .clone()
        }
    };
    assert_eq!(
        outcome(busy).await.as_deref(),
        Some(format!("ignored: the resource is in use by {holder}").as_str())
    );
    assert_eq!(outcome(idle_one).await.as_deref(), Some("applied"));
    assert_eq!(
        store.resource_get(busy).await.unwrap().status,
        ResourceStatus::Active
    );
    assert_eq!(
        store.resource_get(idle_one).await.unwrap().status,
        ResourceStatus::Released
    );
}

/// Two leases put to sleep waiting for capacity of their type, having read `generation`.
async fn waiting_pair(store: &dyn Store, generation: i64) -> (ObjectId, ObjectId, Vec<Claim>) {
    let (older, newer) = (lease(store).await, lease(store).await);
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    for claim in &claims {
        let mut plan = Plan::new();
        plan.push(Write::WaitForCapacity {
            lease: claim.object,
            resource_type: "thing".into(),
            seen: generation,
        })
        .push(Write::ReleaseClaim { wake_at: None });
        store.apply(claim, &plan, TTL).await.unwrap();
    }
    (older, newer, claims)
}

async fn apply_wakes_waiting_leases_in_request_order(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let generation = store.capacity_generation("thing").await.unwrap();
    let (older, newer, _) = waiting_pair(store.as_ref(), generation).await;
    assert!(claim_one(store.as_ref(), "w").await.is_none(), "they sleep");
    clock.advance(Duration::from_secs(1));
    let other = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), other).await;
    let mut capacity = Plan::new();
    capacity.push(Write::WakeWaiting {
        resource_type: "thing".into(),
    });
    store.apply(&claim, &capacity, TTL).await.unwrap();
    assert_eq!(
        store.capacity_generation("thing").await.unwrap(),
        generation + 1
    );
    let mut order = Vec::new();
    for worker in ["a", "b"] {
        order.extend(
            store
                .work_item_claim(worker, 1, TTL, &Load::default())
                .await
                .unwrap(),
        );
    }
    let order: Vec<ObjectId> = order.into_iter().map(|c| c.object).collect();
    assert_eq!(order, [older, newer], "woken oldest request first");
}

async fn apply_wakes_at_once_a_lease_that_missed_capacity(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let generation = store.capacity_generation("thing").await.unwrap();
    let (older, newer, _) = waiting_pair(store.as_ref(), generation - 1).await;
    let due: Vec<ObjectId> = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.object)
        .collect();
    assert_eq!(due, [older, newer], "capacity moved on before they slept");
}

async fn apply_limits_resources_by_bucket_and_setting_up(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    // Each for an owner of its own, so that no reserve applies (the next check has those).
    let made = std::cell::Cell::new(0);
    let insert = |changes: &[&str]| {
        made.set(made.get() + 1);
        let mut plan = Plan::new();
        plan.push(Write::InsertResource {
            blueprint,
            resource_type: "thing".into(),
            depth: 0,
            made_for: format!("owner:{}", made.get()),
            made_for_lease: None,
            limits: limits(changes),
        });
        plan
    };
    // A burst of two, then one every 30 s.
    let bucket = ["resources-per-minute=2", "resource-burst=2"];
    store.apply(&claim, &insert(&bucket), TTL).await.unwrap();
    store.apply(&claim, &insert(&bucket), TTL).await.unwrap();
    let error = store
        .apply(&claim, &insert(&bucket), TTL)
        .await
        .unwrap_err();
    let next = store.now() + 30_000;
    assert!(
        matches!(&error, Error::Limited { limit: Limit::ResourcesPerMinute, retry_at: Some(at), reason, .. }
            if *at == next && reason.contains("pool made its share of resources for now")),
        "{error:?}"
    );
    clock.advance(Duration::from_secs(30));
    let claim = claim_of(store.as_ref(), owner).await;
    store.apply(&claim, &insert(&bucket), TTL).await.unwrap();
    assert!(store.apply(&claim, &insert(&bucket), TTL).await.is_err());

    // Three being set up: a fourth waits until one of them is active.
    let roomy = ["setting-up=3", "resource-burst=100"];
    let error = store.apply(&claim, &insert(&roomy), TTL).await.unwrap_err();
    assert!(
        matches!(&error, Error::Limited { limit: Limit::SettingUp, reason, .. }
            if reason.contains("pool has 3 resources being set up, its limit (setting-up=3)")),
        "{error:?}"
    );
    let setting_up = store
        .resource_list(Some(ResourceStatus::Pending))
        .await
        .unwrap();
    let mut activate = Plan::new();
    activate.push(Write::ResourceStatus {
        resource: setting_up[0].id.into(),
        status: ResourceStatus::Active,
    });
    store.apply(&claim, &activate, TTL).await.unwrap();
    store.apply(&claim, &insert(&roomy), TTL).await.unwrap();
}

async fn apply_keeps_a_reserve_for_tenants_with_nothing_being_set_up(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let insert = |tenant: &str, changes: &[&str]| {
        let mut plan = Plan::new();
        plan.push(Write::InsertResource {
            blueprint,
            resource_type: "thing".into(),
            depth: 0,
            made_for: tenant.into(),
            made_for_lease: None,
            limits: limits(changes),
        });
        plan
    };
    // Four setup slots: a tenant with some being set up leaves the last one to the others.
    let slots = ["setting-up=4", "resource-burst=100"];
    for _ in 0..3 {
        let plan = insert("owner:flood", &slots);
        store.apply(&claim, &plan, TTL).await.unwrap();
    }
    let error = store
        .apply(&claim, &insert("owner:flood", &slots), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Limited { limit: Limit::SettingUp, reason, .. }
            if reason == "pool keeps its last 1 setup slots of 4 for requests with none being \
                          set up; owner:flood has 3"),
        "{error:?}"
    );
    // What the allocator reads before calling `allocate-resource` says the same.
    let setup = store
        .resource_setup(blueprint, "owner:flood")
        .await
        .unwrap();
    assert_eq!((setup.setting_up, setup.mine), (3, 3));
    let flood = limits(&slots);
    assert!(crate::limits::room(&flood, setup, store.now() as i64).is_err());
    let newcomer = store
        .resource_setup(blueprint, "owner:valid")
        .await
        .unwrap();
    assert_eq!((newcomer.setting_up, newcomer.mine), (3, 0));
    assert!(crate::limits::room(&flood, newcomer, store.now() as i64).is_ok());
    let valid = insert("owner:valid", &slots);
    store.apply(&claim, &valid, TTL).await.unwrap();
    let error = store.apply(&claim, &valid, TTL).await.unwrap_err();
    assert!(
        matches!(&error, Error::Limited { limit: Limit::SettingUp, reason, .. }
            if reason.contains("pool has 4 resources being set up, its limit")),
        "{error:?}"
    );
    // The same of the resource bucket: four tokens, the last one kept.
    let other = self::blueprint(store.as_ref(), "other").await;
    let bucket = |tenant: &str| {
        let mut plan = Plan::new();
        plan.push(Write::InsertResource {
            blueprint: other,
            resource_type: "thing".into(),
            depth: 0,
            made_for: tenant.into(),
            made_for_lease: None,
            limits: limits(&["resources-per-minute=60", "resource-burst=4"]),
        });
        plan
    };
    for _ in 0..3 {
        store
            .apply(&claim, &bucket("owner:flood"), TTL)
            .await
            .unwrap();
    }
    let error = store
        .apply(&claim, &bucket("owner:flood"), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Limited {
                limit: Limit::ResourcesPerMinute,
                ..
            }
        ),
        "{error:?}"
    );
    store
        .apply(&claim, &bucket("owner:valid"), TTL)
        .await
        .unwrap();
}

async fn apply_limits_the_supporting_leases_a_blueprint_has_waiting(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let (blueprint, other) = (
        self::blueprint(store.as_ref(), "fan").await,
        self::blueprint(store.as_ref(), "calm").await,
    );
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let parent = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let sibling = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let calm = resource(store.as_ref(), &claim, other, ResourceStatus::Active).await;
    let request = |parent: ObjectId, requester, key: &str| {
        let mut plan = Plan::new();
        plan.push(Write::InsertSupportingLease {
            parent: parent.into(),
            requester,
            waiting_limit: 2,
            key: key.into(),
            resource_type: "thing".into(),
            attributes: Default::default(),
        });
        plan
    };
    store
        .apply(&claim, &request(parent, blueprint, "a"), TTL)
        .await
        .unwrap();
    let b = store
        .apply(&claim, &request(sibling, blueprint, "b"), TTL)
        .await
        .unwrap()
        .inserted[0];
    let error = store
        .apply(&claim, &request(parent, blueprint, "c"), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Limited { limit: Limit::PendingSupporting, reason, .. }
            if reason.contains("fan's resources have 2 supporting leases waiting, its limit")),
        "{error:?}"
    );
    // Another blueprint's resources have their own.
    store
        .apply(&claim, &request(calm, other, "a"), TTL)
        .await
        .unwrap();
    // One served: room for the next.
    let mut served = Plan::new();
    served.push(Write::LeaseStatus {
        lease: b,
        status: LeaseStatus::Active,
    });
    store.apply(&claim, &served, TTL).await.unwrap();
    store
        .apply(&claim, &request(parent, blueprint, "c"), TTL)
        .await
        .unwrap();
}

async fn apply_logs_a_repeated_line_once(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), lease).await;
    let waiting = |message: &str| {
        let mut plan = Plan::new();
        plan.push(Write::LogIfNew {
            object: lease,
            kind: "lease.waiting-for-resources".into(),
            message: message.into(),
        });
        plan
    };
    for message in ["no room", "no room", "backing off", "no room", "no room"] {
        store.apply(&claim, &waiting(message), TTL).await.unwrap();
    }
    let said: Vec<String> = store
        .log_list(Some(lease), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.kind == "lease.waiting-for-resources")
        .map(|l| l.message)
        .collect();
    assert_eq!(said, ["no room", "backing off", "no room"]);
}

async fn blueprint_add_kept_counts_what_retention_gives_back(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "chatty").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let mut plan = Plan::new();
    plan.push(Write::BlueprintLog {
        object: owner.into(),
        blueprint,
        entries: vec![("lease.blueprint".into(), "x".repeat(500))],
    })
    .push(Write::RecordStep(StepRecord {
        id: 0,
        object: owner,
        blueprint,
        hook: "release-lease".into(),
        step: Some("y".repeat(300)),
        verdict: "applied".into(),
        duration_us: 1,
        created_at: 0,
    }))
    .push(Write::LeaseStatus {
        lease: owner,
        status: LeaseStatus::Destroyed,
    });
    store.apply(&claim, &plan, TTL).await.unwrap();
    let kept = crate::store::Kept {
        log: 500,
        steps: 300,
    };
    store
        .blueprint_add_kept(&[(blueprint, kept)])
        .await
        .unwrap();
    store
        .blueprint_add_kept(&[(blueprint, kept)])
        .await
        .unwrap();
    let before = store.blueprint_get(blueprint).await.unwrap();
    assert_eq!((before.log_bytes, before.step_bytes), (1000, 600));
    // Retention gives back the bytes of what it prunes (the log entry counts against the
    // blueprint that wrote it; the host's own entries against none).
    clock.advance(Duration::from_secs(1));
    store.gc(store.now()).await.unwrap();
    let after = store.blueprint_get(blueprint).await.unwrap();
    assert_eq!((after.log_bytes, after.step_bytes), (500, 300));
}

async fn work_item_claim_shares_workers_among_tenants(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let flood = NewLease {
        resource_type: "thing".into(),
        owner: "flood".into(),
        ..NewLease::default()
    };
    store.lease_insert(&flood, 50).await.unwrap();
    clock.advance(Duration::from_millis(10));
    let alice = NewLease {
        owner: "alice".into(),
        ..flood.clone()
    };
    let hers = store.lease_insert(&alice, 2).await.unwrap();
    let claims = store
        .work_item_claim("w", 4, TTL, &Load::default())
        .await
        .unwrap();
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant.as_str()).collect();
    assert_eq!(
        tenants.iter().filter(|t| **t == "owner:alice").count(),
        2,
        "fifty older leases of one owner leave another their turns: {tenants:?}"
    );
    assert!(claims.iter().any(|c| c.object == hers[0].id));
    // Whoever runs the most here waits for the others.
    let mut busy = Load::default();
    busy.add("owner:flood", 63);
    let mut more = store.lease_insert(&alice, 1).await.unwrap();
    let next = store.work_item_claim("w", 1, TTL, &busy).await.unwrap();
    assert_eq!(next[0].object, more.remove(0).id);
    // With no one else due, one tenant takes every worker.
    let rest = store.work_item_claim("w", 100, TTL, &busy).await.unwrap();
    assert_eq!(rest.len(), 48);
    assert!(rest.iter().all(|c| c.tenant == "owner:flood"));
}

async fn lease_insert_refuses_more_waiting_leases_than_an_owner_may_have(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let limited = |owner: &str| NewLease {
        resource_type: "thing".into(),
        owner: owner.into(),
        waiting_limit: Some((3, "pool".into())),
        ..NewLease::default()
    };
    store.lease_insert(&limited("cli:flood"), 2).await.unwrap();
    let error = store
        .lease_insert(&limited("cli:flood"), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Limited { limit: Limit::PendingPerOwner, reason, .. }
            if reason.starts_with("cli:flood has 2 \"thing\" leases waiting to become active; \
                2 more would pass pool's limit of 3 per owner")),
        "{error:?}"
    );
    assert_eq!(
        store.lease_list(None).await.unwrap().len(),
        2,
        "none of the two"
    );
    store.lease_insert(&limited("cli:flood"), 1).await.unwrap();
    store.lease_insert(&limited("cli:alice"), 3).await.unwrap();
}

async fn blueprint_change_limits_logs_and_keeps_concurrent_changes(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let id = blueprint(store.as_ref(), "pool").await;
    let change = |text: &str| [crate::limits::parse_change(text).unwrap()];
    let (a, b) = (change("setting-up=4"), change("log-total=1M"));
    let (first, second) = tokio::join!(
        store.blueprint_change_limits(id, &a, "cli:alice"),
        store.blueprint_change_limits(id, &b, "cli:bob"),
    );
    first.unwrap();
    second.unwrap();
    let limits = store.blueprint_get(id).await.unwrap().limits;
    assert_eq!(
        (limits.get(Limit::SettingUp), limits.get(Limit::LogTotal)),
        (4, 1 << 20)
    );
    let back = change("setting-up=default");
    let changed = store
        .blueprint_change_limits(id, &back, "cli:alice")
        .await
        .unwrap();
    assert!(!changed.limits.is_set(Limit::SettingUp));
    let logs = store.log_list(Some(id), 0, 100).await.unwrap();
    let said: Vec<&str> = logs
        .iter()
        .filter(|l| l.kind == "blueprint.limits")
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(
        said.contains(
            &"limits changed by cli:alice from [setting-up=4, log-total=1M] to [log-total=1M]"
        ),
        "{said:?}"
    );
}

async fn apply_schedules_a_deadline(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    let until = store.now() + 60_000;
    let mut plan = Plan::new();
    plan.push(Write::SetUntil {
        object: lease.into(),
        until: Some(until),
    })
    .push(Write::ReleaseClaim { wake_at: None });
    store.apply(&claim, &plan, TTL).await.unwrap();
    assert_eq!(
        store.work_item_get(lease).await.unwrap().wake_at,
        Some(until)
    );
    clock.advance(Duration::from_secs(60));
    assert!(
        claim_one(store.as_ref(), "w").await.is_some(),
        "due at its deadline"
    );
}

async fn apply_records_blueprint_failures_and_recovery(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let retry_at = store.now() + 4_000;
    for n in 1..=super::FAILING_AFTER {
        let mut plan = Plan::new();
        plan.push(Write::BlueprintFailed {
            blueprint,
            reason: format!("failure {n}"),
            retry_at,
        });
        store.apply(&claim, &plan, TTL).await.unwrap();
    }
    let failing = store.blueprint_get(blueprint).await.unwrap();
    assert!(failing.is_failing() && failing.is_backing_off(store.now()));
    assert_eq!(failing.last_failure.as_deref(), Some("failure 3"));
    let mut plan = Plan::new();
    plan.push(Write::BlueprintRecovered { blueprint });
    store.apply(&claim, &plan, TTL).await.unwrap();
    let working = store.blueprint_get(blueprint).await.unwrap();
    assert_eq!((working.failures, working.retry_at), (0, None));
    let kinds: Vec<String> = store
        .log_list(Some(blueprint), 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "blueprint.added",
            "blueprint.failing",
            "blueprint.recovered"
        ]
    );
}

async fn blueprint_switch_clears_a_back_off_and_wakes_waiting_leases(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let fail = async |n: i64| {
        let owner = lease(store.as_ref()).await;
        let claim = claim_of(store.as_ref(), owner).await;
        let mut plan = Plan::new();
        plan.push(Write::BlueprintFailed {
            blueprint,
            reason: format!("failure {n}"),
            retry_at: store.now() + 600_000,
        });
        plan.push(Write::ReleaseClaim { wake_at: None });
        store.apply(&claim, &plan, TTL).await.unwrap();
    };
    fail(1).await;
    fail(2).await;
    let generation = store.capacity_generation("thing").await.unwrap();
    let (older, newer, _) = waiting_pair(store.as_ref(), generation).await;
    let disabled = store
        .blueprint_switch(blueprint, BlueprintSwitch::Disable)
        .await
        .unwrap();
    assert!(!disabled.enabled && disabled.is_backing_off(store.now()));
    assert!(claim_one(store.as_ref(), "w").await.is_none(), "they sleep");

    let reset = store
        .blueprint_switch(blueprint, BlueprintSwitch::Reset)
        .await
        .unwrap();
    assert_eq!(
        (reset.failures, reset.retry_at, reset.enabled),
        (0, None, false)
    );
    let due: Vec<ObjectId> = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.object)
        .collect();
    assert_eq!(
        due,
        [older, newer],
        "the leases waiting for its type are woken"
    );
    fail(3).await;
    let enabled = store
        .blueprint_switch(blueprint, BlueprintSwitch::Enable)
        .await
        .unwrap();
    assert_eq!(
        (enabled.failures, enabled.retry_at, enabled.enabled),
        (0, None, true)
    );
    let logs = store.log_list(Some(blueprint), 0, 20).await.unwrap();
    let said: Vec<(&str, &str)> = logs
        .iter()
        .map(|l| (l.kind.as_str(), l.message.as_str()))
        .filter(|(kind, _)| kind.starts_with("blueprint.") && *kind != "blueprint.added")
        .collect();
    assert_eq!(
        said,
        [
            ("blueprint.disabled", "disabled"),
            (
                "blueprint.reset",
                "reset: cleared the back-off after 2 failures in a row; the last: failure 2"
            ),
            (
                "blueprint.enabled",
                "enabled: cleared the back-off after 1 failure in a row; the last: failure 3"
            ),
        ]
    );
}

async fn apply_nests_supporting_leases_one_deeper(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint,
        resource_type: "thing".into(),
        depth: 2,
        made_for: "owner:test".into(),
        made_for_lease: None,
        limits: unlimited(),
    })
    .push(Write::InsertSupportingLease {
        parent: Target::Inserted(0),
        requester: blueprint,
        waiting_limit: 1000,
        key: "host".into(),
        resource_type: "host".into(),
        attributes: Default::default(),
    });
    let inserted = store.apply(&claim, &plan, TTL).await.unwrap().inserted;
    assert_eq!(store.resource_get(inserted[0]).await.unwrap().depth, 2);
    assert_eq!(store.lease_get(inserted[1]).await.unwrap().depth, 3);
}

async fn apply_forgets_exec_results_of_another_acquisition(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let lease = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), lease).await;
    let first = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let second = resource(store.as_ref(), &claim, blueprint, ResourceStatus::Active).await;
    let result = crate::domain::ExecResult {
        id: "probe".into(),
        exit_code: Some(0),
        stdout: "on the first".into(),
        stderr: String::new(),
    };
    let mut plan = Plan::new();
    plan.push(Write::SetAcquiring {
        lease,
        resource: Some(first.into()),
    })
    .push(Write::SetExecResults {
        object: lease,
        results: vec![result],
    });
    store.apply(&claim, &plan, TTL).await.unwrap();
    let again = |resource: ObjectId| {
        let mut plan = Plan::new();
        plan.push(Write::SetAcquiring {
            lease,
            resource: Some(resource.into()),
        });
        plan
    };
    store.apply(&claim, &again(first), TTL).await.unwrap();
    let kept = store.lease_get(lease).await.unwrap();
    assert_eq!((kept.acquiring, kept.exec_results.len()), (Some(first), 1));
    store.apply(&claim, &again(second), TTL).await.unwrap();
    let switched = store.lease_get(lease).await.unwrap();
    assert_eq!(
        (switched.acquiring, switched.exec_results.len()),
        (Some(second), 0),
        "results about the first resource never reach a call about the second"
    );
}

async fn blueprint_change_grants_logs_the_change(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let grants: Vec<crate::grant::Grant> = vec!["local:/srv/hosts".parse().unwrap()];
    let change = granting(&grants);
    let changed = store
        .blueprint_change_grants(blueprint, &change, "cli:alice")
        .await
        .unwrap();
    assert_eq!(changed.grants, grants);
    assert_eq!(store.blueprint_get(blueprint).await.unwrap().grants, grants);
    let last = store
        .log_list(Some(blueprint), 0, 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        last.message,
        "grants changed by cli:alice from [] to [local:/srv/hosts]"
    );
    assert!(matches!(
        store
            .blueprint_change_grants(ObjectId::Blueprint(99), &change, "x")
            .await,
        Err(Error::NotFound(_))
    ));
    let revoke_missing = crate::grant::GrantChange {
        revoke: vec!["local:/srv/other".parse().unwrap()],
        ..Default::default()
    };
    let refused = store
        .blueprint_change_grants(blueprint, &revoke_missing, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Precondition(m) if m.contains("no grant local:/srv/other")),
        "{refused:?}"
    );
    assert_eq!(store.blueprint_get(blueprint).await.unwrap().grants, grants);
}

/// A change that grants `grants`.
fn granting(grants: &[crate::grant::Grant]) -> crate::grant::GrantChange {
    crate::grant::GrantChange {
        grant: grants.to_vec(),
        ..Default::default()
    }
}

async fn blueprint_update_switches_component_and_config_and_clears_failures(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let owner = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), owner).await;
    let mut plan = Plan::new();
    plan.push(Write::BlueprintFailed {
        blueprint,
        reason: "clone failed".into(),
        retry_at: store.now() + 60_000,
    });
    store.apply(&claim, &plan, TTL).await.unwrap();

    let generation = store.capacity_generation("thing").await.unwrap();
    let update = super::BlueprintUpdate {
        from_version: 1,
        wasm: Some(b"\0asm v2".to_vec()),
        digest: "d2".into(),
        component_name: "test-v2".into(),
        config: r#"{"v": 2}"#.into(),
    };
    let updated = store
        .blueprint_update(blueprint, update, "cli:alice")
        .await
        .unwrap();
    assert_eq!(
        (updated.component.as_str(), updated.component_name.as_str()),
        ("d2", "test-v2")
    );
    assert_eq!(updated.config, r#"{"v": 2}"#);
    assert_eq!(updated.version, 2);
    assert_eq!((updated.failures, updated.retry_at), (0, None));
    assert_eq!(updated.resource_type, "thing", "the type never changes");
    assert_eq!(
        store.capacity_generation("thing").await.unwrap(),
        generation + 1,
        "leases waiting for the type are woken"
    );
    assert_eq!(store.component_get("d2").await.unwrap(), b"\0asm v2");
    assert_eq!(store.component_get("d1").await.unwrap(), b"\0asm", "kept");
    let last = store
        .log_list(Some(blueprint), 0, 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.kind, "blueprint.updated");
    assert_eq!(
        last.message,
        r#"updated by cli:alice to version 2: component d1 (test) → d2 (test-v2); config {} → {"v": 2}"#
    );

    // Back to the first component, whose bytes are stored already: no wasm to send.
    let back = super::BlueprintUpdate {
        from_version: 2,
        wasm: None,
        digest: "d1".into(),
        component_name: "test".into(),
        config: r#"{"v": 2}"#.into(),
    };
    let reverted = store
        .blueprint_update(blueprint, back, "web:bob")
        .await
        .unwrap();
    assert_eq!((reverted.component.as_str(), reverted.version), ("d1", 3));
    let missing = super::BlueprintUpdate {
        from_version: 1,
        wasm: None,
        digest: "d1".into(),
        component_name: "test".into(),
        config: "{}".into(),
    };
    assert!(matches!(
        store
            .blueprint_update(ObjectId::Blueprint(99), missing, "x")
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn blueprint_update_refuses_an_update_prepared_from_a_replaced_version(
    store: Arc<dyn Store>,
    _: Arc<ManualClock>,
) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let update = super::BlueprintUpdate {
                from_version: 1,
                wasm: None,
                digest: "d1".into(),
                component_name: "test".into(),
                config: format!(r#"{{"racer": {n}}}"#),
            };
            tokio::spawn(async move { store.blueprint_update(blueprint, update, "cli").await })
        })
        .collect();
    let mut applied = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Ok(updated) => applied.push(updated),
            Err(Error::Superseded {
                blueprint: named,
                from: 1,
                current: 2,
            }) => assert_eq!(named, blueprint),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(applied.len(), 1, "one update per version: {applied:?}");
    let now = store.blueprint_get(blueprint).await.unwrap();
    assert_eq!((now.version, &now.config), (2, &applied[0].config));
    let updates = store.log_list(Some(blueprint), 0, 100).await.unwrap();
    let updates = updates.iter().filter(|l| l.kind == "blueprint.updated");
    assert_eq!(updates.count(), 1, "refused updates write nothing");
    let stale = super::BlueprintUpdate {
        from_version: 1,
        wasm: None,
        digest: "d1".into(),
        component_name: "test".into(),
        config: "{}".into(),
    };
    let refused = store.blueprint_update(blueprint, stale, "cli").await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        "B1 is at version 2 now: another update replaced version 1, which this update was \
         prepared from; nothing was changed"
    );
}

async fn lease_list_on_resource_lists_live_leases_only(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let blueprint = blueprint(store.as_ref(), "pool").await;
    let (gone, live) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let resource = resource(
        store.as_ref(),
        &claim_of(gone),
        blueprint,
        ResourceStatus::Active,
    )
    .await;
    for lease in [gone, live] {
        let mut plan = Plan::new();
        plan.push(Write::LeaseAcquire {
            lease,
            resource: resource.into(),
        });
        store.apply(&claim_of(lease), &plan, TTL).await.unwrap();
    }
    let mut destroy = Plan::new();
    destroy.push(Write::LeaseStatus {
        lease: gone,
        status: LeaseStatus::Destroyed,
    });
    store.apply(&claim_of(gone), &destroy, TTL).await.unwrap();
    let listed: Vec<ObjectId> = store
        .lease_list_on_resource(resource)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(listed, [live]);
}

async fn gc_prunes_only_what_finished_before_the_cutoff(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let (old, live) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let consumed = post(store.as_ref(), old, CommandKind::Release, "cli")
        .await
        .unwrap();
    let mut destroy = Plan::new();
    destroy
        .push(Write::ConsumeCommand {
            id: consumed.id,
            outcome: "applied".into(),
        })
        .push(Write::LeaseStatus {
            lease: old,
            status: LeaseStatus::Destroyed,
        })
        .push(Write::ReleaseClaim { wake_at: None });
    store.apply(&claim_of(old), &destroy, TTL).await.unwrap();
    post(store.as_ref(), live, CommandKind::Release, "cli")
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    let cutoff = store.now();
    clock.advance(Duration::from_secs(1));
    let recent = post(store.as_ref(), live, CommandKind::Release, "later")
        .await
        .unwrap();

    let report = store.gc(cutoff).await.unwrap();
    assert_eq!((report.leases, report.commands), (1, 1), "{report:?}");
    assert!(report.logs >= 1, "{report:?}");
    assert!(matches!(
        store.lease_get(old).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.work_item_get(old).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        store.lease_get(live).await.unwrap().status,
        LeaseStatus::Pending
    );
    let pending = CommandFilter {
        target: Some(live),
        pending: true,
    };
    assert_eq!(
        store.command_list(&pending).await.unwrap().len(),
        2,
        "queued commands are never pruned, however old"
    );
    assert_eq!(recent.target, live);
    assert_eq!(store.gc(cutoff).await.unwrap(), super::GcReport::default());
}

/// Everything recorded about an object: its log entries, its audit trail and its commands.
async fn history(
    store: &dyn Store,
    object: ObjectId,
) -> (Vec<super::LogEntry>, Vec<StepRecord>, Vec<Command>) {
    let commands = CommandFilter {
        target: Some(object),
        pending: false,
    };
    (
        store.log_list(Some(object), 0, 1000).await.unwrap(),
        store.step_list(object, 0, 1000).await.unwrap(),
        store.command_list(&commands).await.unwrap(),
    )
}

/// Gives `object` a log entry, a step of `blueprint`'s and a consumed command under `claim`,
/// and destroys it if `destroy`.
async fn give_history(
    store: &dyn Store,
    claim: &Claim,
    (object, blueprint): (ObjectId, ObjectId),
    destroy: bool,
) {
    let command = post(store, object, CommandKind::Release, "cli:alice")
        .await
        .unwrap();
    let mut plan = Plan::new();
    plan.push(Write::ConsumeCommand {
        id: command.id,
        outcome: if destroy {
            "applied"
        } else {
            "ignored: testing"
        }
        .into(),
    })
    .push(Write::RecordStep(StepRecord {
        id: 0,
        object,
        blueprint,
        hook: "activate-lease".into(),
        step: None,
        verdict: "applied".into(),
        duration_us: 1,
        created_at: 0,
    }))
    .log(object, "test.history", "history to keep or prune");
    if destroy {
        plan.push(Write::LeaseStatus {
            lease: object,
            status: LeaseStatus::Destroyed,
        });
    }
    let applied = store.apply(claim, &plan, TTL).await.unwrap();
    assert_eq!(applied.consumed, [(CommandKind::Release, destroy)]);
}

async fn gc_keeps_the_history_of_live_objects_and_the_registration_audit(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let bp = blueprint(store.as_ref(), "pool").await;
    let grants = vec!["local:/srv".parse().unwrap()];
    store
        .blueprint_change_grants(bp, &granting(&grants), "cli:alice")
        .await
        .unwrap();
    store
        .blueprint_switch(bp, BlueprintSwitch::Disable)
        .await
        .unwrap();
    let (live, gone) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let made = resource(store.as_ref(), &claim_of(live), bp, ResourceStatus::Active).await;
    give_history(store.as_ref(), &claim_of(live), (live, bp), false).await;
    give_history(store.as_ref(), &claim_of(live), (made, bp), false).await;
    let spent = spent_resource(store.as_ref(), &claim_of(gone), bp).await;
    give_history(store.as_ref(), &claim_of(gone), (gone, bp), true).await;
    let pruned = [
        history(store.as_ref(), gone).await,
        history(store.as_ref(), spent).await,
    ];
    let kept = [
        history(store.as_ref(), live).await,
        history(store.as_ref(), made).await,
        history(store.as_ref(), bp).await,
    ];
    for (logs, steps, commands) in &kept[..2] {
        assert!(!logs.is_empty() && !steps.is_empty() && !commands.is_empty());
    }
    assert!(
        !kept[2].0.is_empty(),
        "the blueprint's registration is logged"
    );

    clock.advance(Duration::from_secs(3600));
    let report = store.gc(store.now()).await.unwrap();
    assert_eq!(
        history(store.as_ref(), live).await,
        kept[0],
        "a live lease keeps all its history"
    );
    assert_eq!(
        history(store.as_ref(), made).await,
        kept[1],
        "so does a live resource"
    );
    assert_eq!(
        history(store.as_ref(), bp).await,
        kept[2],
        "the registration audit is kept"
    );
    for object in [gone, spent] {
        assert_eq!(history(store.as_ref(), object).await, Default::default());
    }
    assert!(matches!(
        store.lease_get(gone).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.resource_get(spent).await,
        Err(Error::NotFound(_))
    ));
    let expected = super::GcReport {
        logs: pruned.iter().map(|(logs, _, _)| logs.len() as u64).sum(),
        steps: pruned.iter().map(|(_, steps, _)| steps.len() as u64).sum(),
        commands: pruned
            .iter()
            .map(|(_, _, commands)| commands.len() as u64)
            .sum(),
        leases: 1,
        resources: 1,
    };
    assert_eq!(report, expected);
}

/// A resource of `blueprint` that the lease claimed by `claim` acquired, that gained a history,
/// and that was destroyed: it can go once the lease has gone.
async fn spent_resource(store: &dyn Store, claim: &Claim, blueprint: ObjectId) -> ObjectId {
    let spent = resource(store, claim, blueprint, ResourceStatus::Active).await;
    let mut plan = Plan::new();
    plan.push(Write::LeaseAcquire {
        lease: claim.object,
        resource: spent.into(),
    });
    store.apply(claim, &plan, TTL).await.unwrap();
    give_history(store, claim, (spent, blueprint), false).await;
    let mut plan = Plan::new();
    plan.push(Write::ResourceStatus {
        resource: spent.into(),
        status: ResourceStatus::Destroyed,
    });
    store.apply(claim, &plan, TTL).await.unwrap();
    spent
}

async fn apply_keeps_the_first_end_of_an_object(store: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let (broken, expired) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let mut plan = Plan::new();
    plan.push(Write::broke(broken, "the repository does not exist"))
        .push(Write::released(broken, "cli:alice"));
    store.apply(&claim_of(broken), &plan, TTL).await.unwrap();
    let end = store.lease_get(broken).await.unwrap().end.unwrap();
    assert_eq!(end.kind, EndKind::Broken);
    assert_eq!(end.to_string(), "broken: the repository does not exist");
    assert!(end.is_failure());

    let mut plan = Plan::new();
    plan.push(Write::released(expired, super::EXPIRY_AUTHOR));
    store.apply(&claim_of(expired), &plan, TTL).await.unwrap();
    let end = store.lease_get(expired).await.unwrap().end.unwrap();
    assert_eq!(
        (end.kind, end.to_string()),
        (EndKind::Expired, "expired".into())
    );
    assert_eq!(
        lease_end(store.as_ref()).await,
        None,
        "a live lease has no end"
    );
}

/// The end of a new lease (none).
async fn lease_end(store: &dyn Store) -> Option<super::End> {
    store.lease_get(lease(store).await).await.unwrap().end
}

async fn lease_page_filters_and_pages_newest_first(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    let mut ids = Vec::new();
    for owner in ["alice", "bob", "alice", "alice", "bob"] {
        let new = NewLease {
            resource_type: "thing".into(),
            owner: owner.into(),
            ..NewLease::default()
        };
        ids.push(store.lease_insert(&new, 1).await.unwrap()[0].id);
    }
    let claim = claim_of(store.as_ref(), ids[1]).await;
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease: ids[1],
        status: LeaseStatus::Broken,
    })
    .push(Write::broke(ids[1], "no blueprint makes a thing"));
    store.apply(&claim, &plan, TTL).await.unwrap();

    let numbers = |page: &super::Page<super::Lease>| -> Vec<ObjectId> {
        page.items.iter().map(|l| l.id).collect()
    };
    let first = store
        .lease_page(&ListQuery {
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&first), vec![ids[4], ids[3]]);
    assert_eq!(first.next, Some(ids[3].number()));
    let second = store
        .lease_page(&ListQuery {
            limit: 2,
            before: first.next,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&second), vec![ids[2], ids[1]]);
    let last = store
        .lease_page(&ListQuery {
            limit: 2,
            before: second.next,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((numbers(&last), last.next), (vec![ids[0]], None));

    let alices = store
        .lease_page(&ListQuery {
            owner: Some("alice".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&alices), vec![ids[3], ids[2], ids[0]]);
    let failed = store
        .lease_page(&ListQuery {
            failed: true,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&failed), vec![ids[1]]);
    let broken_bob = store
        .lease_page(&ListQuery {
            status: Some("broken".into()),
            owner: Some("bob".into()),
            resource_type: Some("thing".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&broken_bob), vec![ids[1]]);
    let other_type = store
        .lease_page(&ListQuery {
            resource_type: Some("host".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(other_type.items.is_empty());
}

async fn counts_count_by_status_and_recent_failures(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let break_it = |id| {
        let mut plan = Plan::new();
        plan.push(Write::LeaseStatus {
            lease: id,
            status: LeaseStatus::Broken,
        })
        .push(Write::broke(id, "it failed"));
        plan
    };
    let old = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), old).await;
    store.apply(&claim, &break_it(old), TTL).await.unwrap();
    clock.advance(Duration::from_secs(2 * 3600));
    let (recent, _live) = (lease(store.as_ref()).await, lease(store.as_ref()).await);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.due, counts.claimed), (2, 1), "{counts:?}");
    assert!(counts.oldest_due.is_some_and(|due| due <= store.now()));
    let claim = claim_of(store.as_ref(), recent).await;
    store.apply(&claim, &break_it(recent), TTL).await.unwrap();

    let counts = store.counts().await.unwrap();
    let of = |status: &str| -> i64 {
        counts
            .leases
            .iter()
            .filter(|(t, s, _)| t == "thing" && s == status)
            .map(|r| r.2)
            .sum()
    };
    assert_eq!((of("broken"), of("pending")), (2, 1), "{counts:?}");
    assert_eq!(counts.leases_failed, (1, 2), "{counts:?}");
    assert_eq!(counts.resources_failed, (0, 0));
}

async fn step_list_keeps_the_audit_trail_in_order(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let bp = blueprint(store.as_ref(), "audited").await;
    let id = lease(store.as_ref()).await;
    let claim = claim_of(store.as_ref(), id).await;
    let step = |hook: &str, verdict: &str| StepRecord {
        id: 0,
        object: id,
        blueprint: bp,
        hook: hook.into(),
        step: Some(r#"{"actions":[],"outcome":"done"}"#.into()),
        verdict: verdict.into(),
        duration_us: 1234,
        created_at: 0,
    };
    let mut plan = Plan::new();
    plan.push(Write::RecordStep(step("acquire-lease", "applied")))
        .push(Write::RecordStep(step(
            "activate-lease",
            "refused: slot lock \"x\" is held",
        )));
    store.apply(&claim, &plan, TTL).await.unwrap();
    let steps = store.step_list(id, 0, 100).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].hook, "acquire-lease");
    assert_eq!(steps[1].verdict, "refused: slot lock \"x\" is held");
    assert_eq!((steps[1].blueprint, steps[1].duration_us), (bp, 1234));
    assert_eq!(steps[0].created_at, store.now());
    assert_eq!(
        store.step_list(id, steps[0].id, 100).await.unwrap().len(),
        1
    );

    clock.advance(Duration::from_secs(60));
    let report = store.gc(store.now()).await.unwrap();
    assert_eq!(report.steps, 0, "{report:?}");
    assert_eq!(
        store.step_list(id, 0, 100).await.unwrap(),
        steps,
        "a live lease's audit trail is kept"
    );
}

async fn apply_batch_keeps_each_plan_all_or_nothing(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(lease(store.as_ref()).await);
    }
    let claims = store
        .work_item_claim("w", 10, TTL, &Load::default())
        .await
        .unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    let mark = |id: ObjectId| Write::SetAttribute {
        object: id.into(),
        key: "batched".into(),
        value: "yes".into(),
    };
    let command = post(store.as_ref(), ids[1], CommandKind::Release, "cli")
        .await
        .unwrap();
    let mut ok = Plan::new();
    ok.push(mark(ids[0]));
    let mut refused = Plan::new();
    refused
        .push(mark(ids[1]))
        .push(Write::ConsumeCommand {
            id: command.id,
            outcome: "applied".into(),
        })
        .push(Write::ConsumeCommand {
            id: command.id,
            outcome: "applied".into(),
        });
    let mut fenced = Plan::new();
    fenced.push(mark(ids[2]));
    let stale = Claim {
        token: claim_of(ids[2]).token - 1,
        ..claim_of(ids[2])
    };
    let mut last = Plan::new();
    last.push(mark(ids[3]))
        .push(Write::ReleaseClaim { wake_at: None });
    let (a, b, d) = (claim_of(ids[0]), claim_of(ids[1]), claim_of(ids[3]));
    let batch = [
        PlanToApply {
            claim: &a,
            plan: &ok,
            ttl: TTL,
        },
        PlanToApply {
            claim: &b,
            plan: &refused,
            ttl: TTL,
        },
        PlanToApply {
            claim: &stale,
            plan: &fenced,
            ttl: TTL,
        },
        PlanToApply {
            claim: &d,
            plan: &last,
            ttl: TTL,
        },
    ];
    let outcomes = store.apply_batch(&batch).await.unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(Error::Precondition(_))),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(outcomes[2], Err(Error::Fenced { .. })),
        "{:?}",
        outcomes[2]
    );
    assert!(outcomes[3].is_ok(), "{:?}", outcomes[3]);
    let batched = |id| {
        let store = store.clone();
        async move {
            store
                .lease_get(id)
                .await
                .unwrap()
                .attributes
                .contains_key("batched")
        }
    };
    assert!(batched(ids[0]).await && batched(ids[3]).await);
    assert!(!batched(ids[1]).await, "a refused plan writes nothing");
    assert!(!batched(ids[2]).await, "a fenced plan writes nothing");
    let queued = store
        .command_list(&CommandFilter {
            target: Some(ids[1]),
            pending: true,
        })
        .await
        .unwrap();
    assert_eq!(
        queued.len(),
        1,
        "the refused plan's first consume was rolled back"
    );
    assert_eq!(
        store.work_item_get(ids[3]).await.unwrap().owner,
        None,
        "the last plan gave its claim back"
    );
}

async fn lease_with_commands_reads_the_pending_ones(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let other = lease(store.as_ref()).await;
    let lease = lease(store.as_ref()).await;
    let (read, commands) = store.lease_with_commands(lease).await.unwrap();
    assert_eq!(
        (read, commands),
        (store.lease_get(lease).await.unwrap(), vec![])
    );

    let first = post(store.as_ref(), lease, CommandKind::Release, "alice")
        .await
        .unwrap();
    let second = post(store.as_ref(), lease, CommandKind::Release, "bob")
        .await
        .unwrap();
    post(store.as_ref(), other, CommandKind::Release, "carol")
        .await
        .unwrap();
    let claim = claim_of(store.as_ref(), lease).await;
    let mut plan = Plan::new();
    plan.push(Write::ConsumeCommand {
        id: first.id,
        outcome: "applied".into(),
    });
    store.apply(&claim, &plan, TTL).await.unwrap();
    let (read, commands) = store.lease_with_commands(lease).await.unwrap();
    assert_eq!(read.id, lease);
    assert_eq!(commands, vec![second], "only the pending one, as posted");

    let missing = store.lease_with_commands(ObjectId::Lease(999)).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
}

async fn installation_secret_is_made_once_and_kept(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let (first, racing) = tokio::join!(store.installation_secret(), store.installation_secret());
    let first = first.unwrap();
    assert_eq!(racing.unwrap(), first, "two first calls keep one secret");
    assert_ne!(first, [0; 32]);
    assert_eq!(
        store.installation_secret().await.unwrap(),
        first,
        "later calls read the same secret"
    );
    let logs = store.log_list(None, 0, 1000).await.unwrap();
    assert!(logs.is_empty(), "making it logs nothing: {logs:?}");
}

async fn token_insert_keeps_names_unique_among_live_tokens(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    use crate::access::Role;
    let new = |name: &str, secret: &str, expires_at| super::NewToken {
        name: name.into(),
        role: Role::Requester,
        secret_hash: crate::access::secret_hash(secret),
        resource_types: Some(vec!["host".into()]),
        expires_at,
        created_by: "cli:tester".into(),
    };
    let made = store.token_insert(&new("ci", "s1", None)).await.unwrap();
    assert_eq!(
        made.resource_types.as_deref(),
        Some(&["host".to_string()][..])
    );
    let taken = store
        .token_insert(&new("ci", "s2", None))
        .await
        .unwrap_err();
    assert!(matches!(taken, Error::Conflict(_)), "{taken}");
    let found = store
        .token_by_secret_hash(&crate::access::secret_hash("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, made);
    let now = store.now();
    assert_eq!(found.principal(now).unwrap().name, "ci");
    assert!(
        store
            .token_by_secret_hash(&crate::access::secret_hash("s2"))
            .await
            .unwrap()
            .is_none()
    );

    let revoked = store.token_revoke("ci").await.unwrap();
    assert!(revoked.revoked_at.is_some() && revoked.principal(now).is_none());
    assert!(matches!(
        store.token_revoke("ci").await,
        Err(Error::NotFound(_))
    ));
    // The name is free again; the revoked token stays listed.
    let again = store
        .token_insert(&new("ci", "s3", Some(now + 1_000)))
        .await
        .unwrap();
    assert!(again.principal(now).is_some());
    clock.advance(Duration::from_secs(1));
    assert!(again.principal(store.now()).is_none(), "expired");
    let names: Vec<_> = store
        .token_list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.revoked_at.is_some()))
        .collect();
    assert_eq!(names, [("ci".into(), true), ("ci".into(), false)]);
}

async fn sessions_last_until_they_expire_end_or_lose_their_token(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    use crate::access::{Role, secret_hash};
    let token = super::NewToken {
        name: "looker".into(),
        role: Role::Viewer,
        secret_hash: secret_hash("t1"),
        resource_types: None,
        expires_at: None,
        created_by: "cli:tester".into(),
    };
    let token = store.token_insert(&token).await.unwrap();
    let (now, hour) = (store.now(), 3_600_000);
    let session = |id: &str, token_id, expires_at| super::NewSession {
        id_hash: id.into(),
        token_sealed: format!("sealed-{id}"),
        token_id,
        expires_at,
    };
    store
        .session_insert(&session("s1", Some(token.id), now + hour))
        .await
        .unwrap();
    store
        .session_insert(&session("s2", Some(token.id), now + 2 * hour))
        .await
        .unwrap();
    store
        .session_insert(&session("s3", None, now + hour))
        .await
        .unwrap();
    let sealed = |id: &'static str| {
        let store = store.clone();
        async move { store.session_token_sealed(id).await.unwrap() }
    };
    assert_eq!(sealed("s1").await.as_deref(), Some("sealed-s1"));
    assert_eq!(sealed("s3").await.as_deref(), Some("sealed-s3"));
    assert_eq!(sealed("nobody").await, None);

    store.session_delete("s1").await.unwrap();
    assert_eq!(sealed("s1").await, None, "signed out");
    assert!(
        sealed("s2").await.is_some(),
        "another session of the token lives"
    );

    clock.advance(Duration::from_millis(hour));
    assert_eq!(sealed("s3").await, None, "expired");
    store
        .session_insert(&session("s4", None, store.now() + hour))
        .await
        .unwrap();
    assert!(sealed("s2").await.is_some());
    store.token_revoke("looker").await.unwrap();
    assert_eq!(sealed("s2").await, None, "its token revoked");
    assert!(
        sealed("s4").await.is_some(),
        "another token's session lives"
    );
}

async fn daemon_seen_keeps_one_row_per_daemon(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    use super::{DAEMON_SILENT_AFTER, DaemonRecord};
    let started = store.now();
    let record = |name: &str, seen_at| DaemonRecord {
        name: name.into(),
        version: "0.1.0".into(),
        started_at: started,
        seen_at,
    };
    store.daemon_seen(&record("a:1", started)).await.unwrap();
    store.daemon_seen(&record("b:2", started)).await.unwrap();
    clock.advance(DAEMON_SILENT_AFTER);
    let now = store.now();
    store.daemon_seen(&record("a:1", now)).await.unwrap();
    let daemons = store.daemon_list().await.unwrap();
    assert_eq!(daemons, [record("a:1", now), record("b:2", started)]);
    assert_eq!(
        DaemonRecord::serving(&daemons, now),
        2,
        "b is silent just now"
    );
    assert_eq!(
        DaemonRecord::serving(&daemons, now + 1),
        1,
        "then no longer"
    );
    store.daemon_gone("a:1").await.unwrap();
    assert_eq!(store.daemon_list().await.unwrap(), [record("b:2", started)]);
}
