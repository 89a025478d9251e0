//! The command queue end to end: real `drydock serve` processes, real CLI processes, the
//! counting blueprint. These are the races Phabricator's Drydock loses (see the reference study).

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::queue::Queue;
use drydock_host::store::{CommandKind, ObjectId};
use drydock_tests::counting::{
    DESTROY_LINE, RELEASE_LINE, active_leases, applied, count_kind, count_logs, resource_of,
    settled_commands, the_cli_wakes_an_idle_daemon,
};
use drydock_tests::{COUNTING_WASM, Env, wait_for, wait_lease, wait_resource};

/// A database with the counting blueprint registered under `config`.
async fn env_with(config: &str) -> Env {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, config, &[])
        .await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_releases_run_the_release_logic_once() {
    let env = env_with(r#"{"release_delay_ms": 1500}"#).await;
    let daemon = env.serve(&["--call-timeout", "10s"]);
    let store = env.store().await;
    let lease = active_leases(&env, 1).await[0];

    let queue = Queue::new(store.clone());
    let lease_text = lease.to_string();
    let processes: Vec<_> = (0..16)
        .map(|_| env.start(&["lease", "release", &lease_text]))
        .collect();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .post(lease, CommandKind::Release, &format!("task-{i}"))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("an in-process post was refused");
    }
    for process in processes {
        let out = process.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    let commands = settled_commands(&store, lease).await;
    assert_eq!(commands.len(), 32);
    assert!(commands.iter().all(|c| c.consumed_at.is_some()));
    assert_eq!(applied(&commands), 1, "{commands:#?}");
    assert_eq!(count_logs(&store, lease, RELEASE_LINE).await, 1);
    assert_eq!(count_kind(&store, lease, "lease.destroyed").await, 1);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn releasing_a_resource_releases_each_lease_once_then_destroys_it_once() {
    let env = env_with(r#"{"release_delay_ms": 200, "destroy_delay_ms": 200}"#).await;
    let _daemon = env.serve(&["--call-timeout", "10s"]);
    let store = env.store().await;
    let leases = active_leases(&env, 5).await;
    let resource = resource_of(&store, leases[0]).await;
    for lease in &leases {
        assert_eq!(
            store.lease_get(*lease).await.unwrap().resource_id,
            Some(resource)
        );
    }

    let resource_text = resource.to_string();
    let twice = [0, 1].map(|_| env.start(&["resource", "release", &resource_text]));
    for process in twice {
        assert!(process.wait_with_output().await.unwrap().status.success());
    }
    wait_resource(&store, resource, ResourceStatus::Destroyed).await;

    let logs = store.log_list(None, 0, 100_000).await.unwrap();
    let resource_destroyed = logs
        .iter()
        .position(|l| l.object == resource && l.kind == "resource.destroyed")
        .unwrap();
    for lease in &leases {
        assert_eq!(
            store.lease_get(*lease).await.unwrap().status,
            LeaseStatus::Destroyed
        );
        assert_eq!(count_logs(&store, *lease, RELEASE_LINE).await, 1, "{lease}");
        assert_eq!(
            count_kind(&store, *lease, "lease.released").await,
            1,
            "{lease}"
        );
        let destroyed = logs
            .iter()
            .position(|l| l.object == *lease && l.kind == "lease.destroyed")
            .unwrap();
        assert!(
            destroyed < resource_destroyed,
            "{lease} outlived {resource}"
        );
    }
    assert_eq!(count_logs(&store, resource, DESTROY_LINE).await, 1);
    let commands = settled_commands(&store, resource).await;
    assert_eq!((commands.len(), applied(&commands)), (2, 1));
    assert!(store.slot_lock_list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_on_one_database_keep_a_single_writer_per_object() {
    let env = env_with(r#"{"max_resources": 3, "release_delay_ms": 20}"#).await;
    let first = env.serve(&["--workers", "3"]);
    let second = env.serve(&["--workers", "3"]);
    let store = env.store().await;
    let leases = active_leases(&env, 24).await;
    assert_eq!(leases.len(), 24);
    env.ok(&["lease", "release", "--all"]).await;
    for lease in &leases {
        wait_lease(&store, *lease, LeaseStatus::Destroyed).await;
    }
    env.ok(&["resource", "release", "--all"]).await;
    for resource in store.resource_list(None).await.unwrap() {
        wait_resource(&store, resource.id, ResourceStatus::Destroyed).await;
        assert_eq!(count_logs(&store, resource.id, DESTROY_LINE).await, 1);
    }
    for lease in &leases {
        assert_eq!(count_logs(&store, *lease, RELEASE_LINE).await, 1, "{lease}");
        for kind in [
            "lease.acquired",
            "lease.activated",
            "lease.released",
            "lease.destroyed",
        ] {
            assert_eq!(count_kind(&store, *lease, kind).await, 1, "{lease} {kind}");
        }
    }
    assert!(
        store.resource_list(None).await.unwrap().len() <= 3 * 2,
        "no runaway allocation"
    );
    assert!(
        first.terminate().await && second.terminate().await,
        "graceful shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_queued_release_is_consumed_as_ignored_and_never_destroys_twice() {
    let env = env_with("{}").await;
    let daemon = env.serve(&[]);
    let store = env.store().await;
    let leases = active_leases(&env, 1).await;
    let resource = resource_of(&store, leases[0]).await;
    assert!(daemon.terminate().await);

    // Both releases are queued before any worker runs.
    let (lease, lease_text, resource_text) =
        (leases[0], leases[0].to_string(), resource.to_string());
    env.ok(&["lease", "release", &lease_text]).await;
    env.ok(&["lease", "release", &lease_text]).await;
    env.ok(&["resource", "release", &resource_text]).await;
    env.ok(&["resource", "release", &resource_text]).await;
    let _daemon = env.serve(&[]);
    wait_resource(&store, resource, ResourceStatus::Destroyed).await;

    let commands = settled_commands(&store, lease).await;
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].outcome.as_deref(), Some("applied"));
    assert_eq!(
        commands[1].outcome.as_deref(),
        Some("ignored: the lease is already released")
    );
    assert_eq!(count_logs(&store, lease, RELEASE_LINE).await, 1);
    assert_eq!(count_kind(&store, lease, "lease.destroyed").await, 1);
    let commands = settled_commands(&store, resource).await;
    assert_eq!(applied(&commands), 1, "{commands:#?}");
    assert_eq!(count_logs(&store, resource, DESTROY_LINE).await, 1);
    assert_eq!(count_kind(&store, resource, "resource.destroyed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_sent_to_a_broken_resource_is_consumed() {
    let env = env_with(r#"{"fail_activation": true, "destroy_delay_ms": 500}"#).await;
    let _daemon = env.serve(&["--call-timeout", "10s"]);
    let store = env.store().await;
    env.ok(&["lease", "request", "--type", "counted"]).await;
    // The first resource made for the lease (the lease itself moves on to others as each
    // breaks, so its `resource_id` is only briefly set).
    let resource = wait_for("a resource", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources.first().map(|r| r.id)
    })
    .await;
    wait_for("the resource to break", || async {
        let status = store.resource_get(resource).await.unwrap().status;
        matches!(status, ResourceStatus::Broken | ResourceStatus::Destroyed).then_some(())
    })
    .await;
    // Broken, or already destroyed: the post is either queued and consumed, or refused outright.
    let out = env
        .drydock(&["resource", "release", &resource.to_string()])
        .await;
    wait_resource(&store, resource, ResourceStatus::Destroyed).await;
    let commands = settled_commands(&store, resource).await;
    if out.status.success() {
        assert_eq!(commands.len(), 1);
        assert!(
            commands[0]
                .outcome
                .as_deref()
                .unwrap()
                .starts_with("ignored: the resource is already"),
            "{commands:?}"
        );
    } else {
        assert!(String::from_utf8_lossy(&out.stderr).contains("is destroyed"));
    }
    assert_eq!(count_logs(&store, resource, DESTROY_LINE).await, 1);
    assert_eq!(
        count_kind(&store, resource, "resource.activation-failure").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_killed_during_a_release_completes_it_exactly_once_after_restart() {
    let env = env_with(r#"{"release_delay_ms": 3000}"#).await;
    let ttl = ["--call-timeout", "10s", "--claim-ttl", "2s"];
    let mut daemon = env.serve(&ttl);
    let store = env.store().await;
    let lease = active_leases(&env, 1).await[0];
    env.ok(&["lease", "release", &lease.to_string()]).await;
    // A worker claims the lease to consume the command, then runs the 3 s release hook; the
    // command is consumed in the same transaction that destroys the lease.
    wait_for("a worker to claim the lease", || async {
        store.work_item_get(lease).await.unwrap().owner
    })
    .await;
    daemon.kill9().await;
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Active,
        "killed before the release committed"
    );

    let _restarted = env.serve(&ttl);
    wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    let commands = settled_commands(&store, lease).await;
    assert_eq!((commands.len(), applied(&commands)), (1, 1));
    assert_eq!(count_logs(&store, lease, RELEASE_LINE).await, 1);
    assert_eq!(count_kind(&store, lease, "lease.destroyed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn until_releases_a_lease_even_across_a_restart() {
    let env = env_with("{}").await;
    let daemon = env.serve(&[]);
    let store = env.store().await;
    let out = env
        .ok(&[
            "lease",
            "request",
            "--type",
            "counted",
            "--until",
            "3s",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    let lease: ObjectId = out.trim().parse().unwrap();
    assert!(daemon.terminate().await);
    let until = store.lease_get(lease).await.unwrap().until.unwrap();
    wait_for("the deadline to pass", || async {
        (store.now() > until).then_some(())
    })
    .await;
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Active
    );

    let _restarted = env.serve(&[]);
    wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    let commands = settled_commands(&store, lease).await;
    assert_eq!(commands.len(), 1);
    assert_eq!(
        (commands[0].author.as_str(), commands[0].outcome.as_deref()),
        ("expiry", Some("applied"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_resource_is_reused_by_the_next_lease() {
    let env = env_with(r#"{"max_resources": 1}"#).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let first = active_leases(&env, 1).await[0];
    let resource = store.lease_get(first).await.unwrap().resource_id.unwrap();
    env.ok(&["lease", "release", &first.to_string()]).await;
    wait_lease(&store, first, LeaseStatus::Destroyed).await;
    let second = active_leases(&env, 1).await[0];
    assert_eq!(
        store.lease_get(second).await.unwrap().resource_id,
        Some(resource)
    );
    assert_eq!(store.resource_list(None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_capacity_a_lease_reclaims_an_idle_resource_it_cannot_use() {
    let env = env_with(r#"{"max_resources": 1, "share": false}"#).await;
    let _daemon = env.serve(&["--reclaim-idle", "0s"]);
    let store = env.store().await;
    let first = active_leases(&env, 1).await[0];
    let idle = store.lease_get(first).await.unwrap().resource_id.unwrap();
    env.ok(&["lease", "release", &first.to_string()]).await;
    wait_lease(&store, first, LeaseStatus::Destroyed).await;

    let second = active_leases(&env, 1).await[0];
    let taken = store.lease_get(second).await.unwrap().resource_id.unwrap();
    assert_ne!(taken, idle);
    assert_eq!(
        store.resource_get(idle).await.unwrap().status,
        ResourceStatus::Destroyed
    );
    let logs = store.log_list(Some(idle), 0, 100).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.kind == "resource.reclaim" && l.message == format!("reclaimed by {second}")),
        "{logs:#?}"
    );
    let waited = store.log_list(Some(second), 0, 100).await.unwrap();
    assert!(
        waited
            .iter()
            .any(|l| l.kind == "lease.waiting-for-reclamation"),
        "{waited:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_daemon_is_woken_by_the_cli_within_its_hour_long_poll() {
    the_cli_wakes_an_idle_daemon(&env_with("{}").await).await;
}
