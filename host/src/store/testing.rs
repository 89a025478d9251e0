//! The conformance suite every [`Store`] backend must pass, in the manner of River's
//! `riverdrivertest`: [`exercise`] runs the same checks, named after the store methods, against
//! fresh stores from a factory. The clock is manual so expiry can be tested without sleeping.

use super::{
    Claim, CommandFilter, CommandKind, Error, ManualClock, NewBlueprint, NewLease, ObjectId, Plan,
    Release, Store, Target, Write,
};
use crate::domain::{LeaseStatus, ResourceStatus};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);

/// Runs every check against stores made by `open`, each on a fresh database.
pub async fn exercise<F, Fut>(open: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            let clock = ManualClock::new(1_700_000_000_000);
            $check(open(clock.clone()).await, clock).await;
        )*};
    }
    run!(
        blueprint_insert_refuses_a_taken_name,
        lease_insert_queues_each_lease,
        command_post_wakes_and_refuses_the_destroyed,
        work_item_claim_coalesces_posts,
        work_item_release_keeps_a_post_made_during_a_run,
        work_item_release_schedules_the_next_wake,
        work_item_claim_takes_back_expired_claims,
        apply_is_fenced_once_the_claim_expires,
        apply_is_all_or_nothing,
        apply_inserts_and_refers_to_new_objects,
        apply_refuses_to_acquire_a_dead_resource,
        apply_can_give_the_claim_back_in_the_same_transaction,
        apply_cascades_a_release_only_when_it_would_change_something,
    );
}

async fn blueprint(store: &dyn Store, name: &str) -> ObjectId {
    let new = NewBlueprint {
        name: name.into(),
        wasm: b"\0asm".to_vec(),
        digest: "d1".into(),
        component_name: "test".into(),
        resource_type: "thing".into(),
        config: "{}".into(),
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
    let mut claims = store.work_item_claim(owner, 10, TTL).await.unwrap();
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
    let claims = store.work_item_claim("w", 10, TTL).await.unwrap();
    assert_eq!(claims.len(), 3);
    let logs = store.log_list(Some(leases[0].id), 0, 10).await.unwrap();
    assert_eq!(logs[0].kind, "lease.queued");
}

async fn command_post_wakes_and_refuses_the_destroyed(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let claim = claim_one(store.as_ref(), "w").await.unwrap();
    store.work_item_release(&claim, &idle()).await.unwrap();
    assert!(claim_one(store.as_ref(), "w").await.is_none());

    let command = store
        .command_post(lease, CommandKind::Release, "alice")
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
    let error = store
        .command_post(lease, CommandKind::Release, "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotReleasable(m) if m.contains("destroyed")),
        "{error:?}"
    );
    let error = store
        .command_post(lease, CommandKind::Reclaim, "bob")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotReleasable(_)));
    let missing = store
        .command_post(ObjectId::Lease(999), CommandKind::Release, "bob")
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    let all = store.command_list(&CommandFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "refused posts left no command");
}

async fn work_item_claim_coalesces_posts(store: Arc<dyn Store>, _: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    for author in ["a", "b", "c", "d", "e"] {
        store
            .command_post(lease, CommandKind::Release, author)
            .await
            .unwrap();
    }
    let claim = claim_one(store.as_ref(), "w")
        .await
        .expect("one claim for five posts");
    assert_eq!(claim.object, lease);
    assert!(
        store
            .work_item_claim("other", 10, TTL)
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
    store
        .command_post(lease, CommandKind::Release, "during")
        .await
        .unwrap();
    store
        .command_post(lease, CommandKind::Release, "during-too")
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

async fn apply_is_fenced_once_the_claim_expires(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let lease = lease(store.as_ref()).await;
    let stalled = claim_one(store.as_ref(), "stalled").await.unwrap();
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Released,
    });
    // Past its expiry, nobody has claimed it yet: still refused, the guard checks the time.
    clock.advance(TTL + Duration::from_millis(1));
    let error = store.apply(&stalled, &plan, TTL).await.unwrap_err();
    assert!(matches!(error, Error::Fenced { .. }), "{error:?}");

    let next = claim_one(store.as_ref(), "next").await.unwrap();
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
    let claims = store.work_item_claim("w", 10, TTL).await.unwrap();
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
        key: "host".into(),
        resource_type: "host".into(),
        attributes: Default::default(),
    });
    let inserted = store.apply(&claim, &plan, TTL).await.unwrap();
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
        .work_item_claim("w", 10, TTL)
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
    let mut plan = Plan::new();
    plan.push(Write::InsertResource {
        blueprint,
        resource_type: "thing".into(),
    })
    .push(Write::ResourceStatus {
        resource: Target::Inserted(0),
        status: ResourceStatus::Released,
    });
    let resource = store.apply(&claim, &plan, TTL).await.unwrap()[0];
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
    store
        .command_post(lease, CommandKind::Release, "during")
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
    let claims = store.work_item_claim("w", 10, TTL).await.unwrap();
    let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
    store
        .command_post(queued, CommandKind::Release, "holder")
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
