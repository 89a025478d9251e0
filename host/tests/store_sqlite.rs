//! The store conformance suite on SQLite, each check on a fresh database file.

use drydock_host::store::sqlite::SqliteStore;
use drydock_host::store::{Store, testing};
use std::sync::Arc;

#[tokio::test]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    testing::exercise(|clock| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://{}", dir.path().join(format!("{n}.db")).display());
        async move {
            let store = SqliteStore::open(&url, clock).await.unwrap();
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::scheduler::Load;
use drydock_host::store::{
    CommandKind, NewBlueprint, NewLease, ObjectId, Plan, ShiftedClock, SystemClock, Target, Write,
};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);

async fn open(path: &std::path::Path, clock: Arc<dyn drydock_host::store::Clock>) -> SqliteStore {
    let url = format!("sqlite://{}", path.display());
    SqliteStore::open(&url, clock).await.unwrap()
}

async fn leases(store: &SqliteStore, count: usize) -> Vec<ObjectId> {
    let new = NewLease {
        resource_type: "thing".into(),
        owner: "test".into(),
        ..NewLease::default()
    };
    let made = store.lease_insert(&new, count).await.unwrap();
    made.into_iter().map(|l| l.id).collect()
}

#[tokio::test]
async fn a_process_whose_wall_clock_stepped_cannot_take_a_live_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drydock.db");
    let steady = open(&db, Arc::new(SystemClock)).await;
    let stepped_clock = ShiftedClock::new(0);
    let stepped = open(&db, stepped_clock.clone()).await;
    leases(&steady, 1).await;
    let held = steady
        .work_item_claim("steady", 1, TTL, &Load::default())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    stepped_clock.step(10 * 60 * 1000);
    assert!(
        stepped
            .work_item_claim("stepped", 10, TTL, &Load::default())
            .await
            .unwrap()
            .is_empty(),
        "ten minutes on the wall clock are no time on the claim clock"
    );
    steady.work_item_heartbeat(&held[0], TTL).await.unwrap();
}

#[tokio::test]
async fn twenty_stores_may_open_a_new_database_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drydock.db");
    let opens: Vec<_> = (0..20)
        .map(|_| {
            let url = format!("sqlite://{}", db.display());
            tokio::spawn(async move { SqliteStore::open(&url, Arc::new(SystemClock)).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("a concurrent first open failed");
    }
}

#[tokio::test]
async fn a_crashed_workers_claim_is_taken_before_a_backlog_of_two_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let clock = drydock_host::store::ManualClock::new(1_700_000_000_000);
    let store = open(&dir.path().join("drydock.db"), clock.clone()).await;
    let crashed = leases(&store, 1).await[0];
    let taken = store
        .work_item_claim("crashed", 1, TTL, &Load::default())
        .await
        .unwrap();
    assert_eq!(taken[0].object, crashed);
    leases(&store, 2000).await;
    clock.advance(TTL + Duration::from_millis(1));
    let next = store
        .work_item_claim("survivor", 4, TTL, &Load::default())
        .await
        .unwrap();
    assert_eq!(
        next[0].object, crashed,
        "recovery waits for the TTL, not the backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reclaim_never_releases_a_resource_a_lease_just_acquired() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("drydock.db"), Arc::new(SystemClock)).await);
    let new = NewBlueprint {
        name: "pool".into(),
        wasm: b"\0asm".to_vec(),
        digest: "d".into(),
        component_name: "test".into(),
        resource_type: "thing".into(),
        config: "{}".into(),
        grants: Vec::new(),
    };
    let blueprint = store.blueprint_insert(new).await.unwrap().id;
    for trial in 0..100 {
        let [lease, maker] = leases(&store, 2).await[..] else {
            unreachable!()
        };
        let claims = store
            .work_item_claim("w", 10, TTL, &Load::default())
            .await
            .unwrap();
        let claim_of = |id| claims.iter().find(|c| c.object == id).unwrap().clone();
        let mut make = Plan::new();
        make.push(Write::InsertResource {
            blueprint,
            resource_type: "thing".into(),
            depth: 0,
            made_for: "owner:test".into(),
            made_for_lease: None,
            limits: testing::unlimited(),
        })
        .push(Write::ResourceStatus {
            resource: Target::Inserted(0),
            status: ResourceStatus::Active,
        });
        let resource = store
            .apply(&claim_of(maker), &make, TTL)
            .await
            .unwrap()
            .inserted[0];
        let reclaim = store
            .command_post(&[resource], CommandKind::Reclaim, "L0")
            .await
            .unwrap()
            .remove(0);
        let resource_claim = store
            .work_item_claim("w", 10, TTL, &Load::default())
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.object == resource)
            .unwrap();
        let acquire = {
            let (store, claim) = (store.clone(), claim_of(lease));
            tokio::spawn(async move {
                let mut plan = Plan::new();
                plan.push(Write::LeaseAcquire {
                    lease,
                    resource: resource.into(),
                })
                .push(Write::LeaseStatus {
                    lease,
                    status: LeaseStatus::Active,
                });
                store.apply(&claim, &plan, TTL).await.is_ok()
            })
        };
        let decide = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut plan = Plan::new();
                plan.push(Write::Reclaim {
                    resource,
                    command: reclaim.id,
                    author: "L0".into(),
                });
                store.apply(&resource_claim, &plan, TTL).await.unwrap();
            })
        };
        let acquired = acquire.await.unwrap();
        decide.await.unwrap();
        let released =
            store.resource_get(resource).await.unwrap().status == ResourceStatus::Released;
        assert!(
            !(acquired && released),
            "trial {trial}: a reclaim released {resource}, which {lease} had just acquired"
        );
    }
}

/// A write that meets another process's write lock waits asleep, not in SQLite's busy handler:
/// the runtime's one thread keeps running other tasks meanwhile, and the write goes through as
/// soon as the lock is gone.
#[tokio::test]
async fn a_write_waiting_for_another_process_lock_leaves_the_thread_free() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drydock.db");
    let store = Arc::new(open(&db, Arc::new(SystemClock)).await);
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writing = tokio::spawn({
        let store = store.clone();
        async move { leases(&store, 1).await }
    });
    // Twenty ticks on the only thread: they happen only if the waiting write does not hold it.
    let mut every = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..20 {
        every.tick().await;
    }
    assert!(!writing.is_finished(), "the write waits for the lock");
    other.execute_batch("COMMIT").unwrap();
    let made = tokio::time::timeout(Duration::from_secs(30), writing)
        .await
        .expect("the write goes through once the lock is gone")
        .unwrap();
    assert_eq!(made.len(), 1);
}

#[tokio::test]
async fn the_installation_secret_is_kept_across_reopening_and_never_made_by_a_read() {
    use drydock_host::store::Access;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    let first = SqliteStore::open(&url, Arc::new(SystemClock))
        .await
        .unwrap();
    let reader = SqliteStore::open_with(&url, Arc::new(SystemClock), Access::Read)
        .await
        .unwrap();
    assert!(
        reader.installation_secret().await.is_err(),
        "a read-only open cannot make the secret"
    );
    let secret = first.installation_secret().await.unwrap();
    drop(first);
    let again = SqliteStore::open(&url, Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(
        again.installation_secret().await.unwrap(),
        secret,
        "a restarted daemon finds the same secret"
    );
    assert_eq!(
        reader.installation_secret().await.unwrap(),
        secret,
        "a read-only open reads the one there"
    );
    let other = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", other.path().join("drydock.db").display());
    let elsewhere = SqliteStore::open(&url, Arc::new(SystemClock))
        .await
        .unwrap();
    assert_ne!(
        elsewhere.installation_secret().await.unwrap(),
        secret,
        "each installation has its own"
    );
}
