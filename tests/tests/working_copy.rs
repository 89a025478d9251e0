//! Drydock's own use case end to end: `working-copy` leases over `host-pool` leases, on a local
//! host, with a real git repository.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{ObjectId, Store};
use drydock_tests::git::repository;
use drydock_tests::{Env, wait_for, wait_lease, wait_resource};
use std::sync::Arc;

async fn attribute(store: &Arc<dyn Store>, lease: ObjectId, key: &str) -> Option<String> {
    let lease = store.lease_get(lease).await.unwrap();
    lease.attributes.get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_copies_are_checked_out_at_the_ref_asked_for_kept_apart_and_reused_clean() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    let (first, second) = repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let repo = format!("repository={}", origin.display());
    let request = |wanted: &'static str| {
        let repo = repo.clone();
        let env = &env;
        async move {
            let leases = env
                .request(
                    "working-copy",
                    &[
                        "--attr",
                        &repo,
                        "--attr",
                        wanted,
                        "--wait",
                        "--timeout",
                        "90s",
                    ],
                )
                .await;
            leases[0]
        }
    };

    let tagged = request("ref=v1").await;
    assert_eq!(
        attribute(&store, tagged, "commit").await.as_deref(),
        Some(first.as_str())
    );
    let head = env
        .ok(&[
            "exec",
            "--lease",
            &tagged.to_string(),
            "--",
            "git",
            "rev-parse",
            "HEAD",
        ])
        .await;
    assert_eq!(head.trim(), first, "exec runs in the working copy");

    // While the first copy is leased, a second lease gets a copy of its own.
    let tip = request("ref=main").await;
    assert_eq!(
        attribute(&store, tip, "commit").await.as_deref(),
        Some(second.as_str())
    );
    let copy_of = |lease| {
        let store = store.clone();
        async move { store.lease_get(lease).await.unwrap().resource_id.unwrap() }
    };
    let (first_copy, second_copy) = (copy_of(tagged).await, copy_of(tip).await);
    assert_ne!(first_copy, second_copy, "concurrent leases share no copy");

    // Dirt left by a lease is gone for the next one, which reuses the copy.
    let path = store.resource_get(first_copy).await.unwrap().attributes["path"].clone();
    let tree = hosts.join(&path);
    std::fs::write(tree.join("junk"), "left behind").unwrap();
    std::fs::write(tree.join("file"), "edited").unwrap();
    env.ok(&["lease", "release", &tagged.to_string()]).await;
    wait_lease(&store, tagged, LeaseStatus::Destroyed).await;
    let again = request("ref=main").await;
    assert_eq!(copy_of(again).await, first_copy, "a clean copy is reused");
    assert_eq!(
        attribute(&store, again, "commit").await.as_deref(),
        Some(second.as_str())
    );
    assert!(!tree.join("junk").exists());
    assert_eq!(std::fs::read_to_string(tree.join("file")).unwrap(), "two");

    // Destroying a copy removes its directory.
    env.ok(&["lease", "release", &again.to_string()]).await;
    wait_lease(&store, again, LeaseStatus::Destroyed).await;
    env.ok(&["resource", "release", &first_copy.to_string()])
        .await;
    wait_for("the released copy's directory to be removed", || async {
        (!tree.exists()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_that_does_not_exist_fails_the_lease_with_the_reason() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let repo = format!("repository={}", origin.display());
    let wanted = [
        "lease",
        "request",
        "--type",
        "working-copy",
        "--attr",
        &repo,
    ];
    let args = [&wanted[..], &["--attr", "ref=no-such-branch", "--wait"]].concat();
    let out = env.drydock(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        !out.status.success()
            && last.starts_with("error: L1 failed: broken: ")
            && last.contains("no branch, tag or commit named no-such-branch"),
        "the reason is on the last line: {stderr}"
    );
    let lease: ObjectId = "L1".parse().unwrap();
    wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    let logs = store.log_list(Some(lease), 0, 100).await.unwrap();
    assert!(
        logs.iter().any(|l| l
            .message
            .contains("no branch, tag or commit named no-such-branch")),
        "{logs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_does_not_exist_fails_the_lease_with_gits_reason() {
    let world = tempfile::tempdir().unwrap();
    let hosts = world.path().join("hosts");
    std::fs::create_dir_all(&hosts).unwrap();
    let env = Env::new();
    env.add_working_copies(&hosts, &[]).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let missing = world.path().join("no-such-repository");
    let repo = format!("repository={}", missing.display());
    let lease = env.request_one("working-copy", &["--attr", &repo]).await;
    wait_lease(&store, lease, LeaseStatus::Destroyed).await;

    let logs = store.log_list(Some(lease), 0, 100).await.unwrap();
    let end = logs
        .iter()
        .find(|l| l.kind == "lease.allocation-failure")
        .unwrap_or_else(|| panic!("no failure on the lease: {logs:#?}"));
    let cloning = format!("cloning {} exited with", missing.display());
    assert!(
        end.message.contains(&cloning)
            && end.message.contains("is not visible on this host")
            && end.message.contains(&format!("ro={}", missing.display()))
            && end.message.contains("3 resources broke under this lease"),
        "{}",
        end.message
    );
    let copies = store.resource_list(None).await.unwrap();
    let copies = copies.iter().filter(|r| r.resource_type == "working-copy");
    assert_eq!(
        copies.count(),
        3,
        "the lease stops making copies that cannot work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_check_runs_a_working_copy_through_its_life_without_a_daemon() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    let (first, _) = repository(&origin);
    let env = Env::new();
    let repo = format!("repository={}", origin.display());
    let supply = format!("host=local:{}", hosts.display());
    let check = |exec: &'static str| {
        let args = [
            "blueprint",
            "check",
            drydock_tests::WORKING_COPY_WASM,
            "--lifecycle",
            "--attr",
            &repo,
            "--attr",
            "ref=v1",
            "--supply",
            &supply,
            "--exec",
            exec,
            "--json",
        ]
        .map(str::to_string);
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let report: serde_json::Value = serde_json::from_str(&env.ok(&args).await).unwrap();
            report["lifecycle"].clone()
        }
    };

    // For real: git clones and checks out v1 in the supplied directory, then removes the copy.
    let real = check("run").await;
    assert_eq!(real["failure"], serde_json::Value::Null, "{real}");
    let calls = real["calls"].as_array().unwrap();
    let activated = calls
        .iter()
        .rfind(|c| c["hook"] == "activate-lease")
        .unwrap();
    let text = activated.to_string();
    assert!(
        text.contains(&first),
        "the lease hook got its own exec result: {text}"
    );
    assert!(
        std::fs::read_dir(hosts.join("working-copies"))
            .unwrap()
            .next()
            .is_none(),
        "destroy-resource removed the copy"
    );

    // Dry run: every exec succeeds with no output, nothing touches the disk.
    let dry = check("ok").await;
    assert_eq!(dry["failure"], serde_json::Value::Null, "{dry}");

    // Without a supplied host the lifecycle stops where the resource waits for one.
    let fails = |extra: Vec<String>| {
        let (env, repo) = (&env, &repo);
        async move {
            let mut args = vec!["blueprint", "check", drydock_tests::WORKING_COPY_WASM];
            args.extend(["--lifecycle", "--attr", repo.as_str()]);
            args.extend(extra.iter().map(String::as_str));
            let out = env.drydock(&args).await;
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        }
    };
    let said = fails(Vec::new()).await;
    assert!(said.contains("waiting for a host"), "{said}");

    // With a host but no --exec, the first exec fails and says how to run it.
    let said = fails(vec!["--supply".into(), supply.clone()]).await;
    assert!(said.contains("runs no exec without --exec run"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_requests_for_a_missing_repository_fail_alone_and_a_valid_one_is_served() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let missing = format!("repository={}", world.path().join("missing").display());
    let bad = env
        .request("working-copy", &["--attr", &missing, "--count", "20"])
        .await;
    let repo = format!("repository={}", origin.display());
    let good = env.request_one("working-copy", &["--attr", &repo]).await;
    wait_lease(&store, good, LeaseStatus::Active).await;
    let failed = wait_for("a bad request to fail", || async {
        for lease in &bad {
            let logs = store.log_list(Some(*lease), 0, 100).await.unwrap();
            if let Some(end) = logs
                .into_iter()
                .find(|l| l.kind == "lease.allocation-failure")
            {
                return Some(end.message);
            }
        }
        None
    })
    .await;
    assert!(failed.contains("cloning"), "{failed}");
    let blueprint = store.blueprint_by_name("working-copy").await.unwrap();
    assert_eq!(
        (blueprint.failures, blueprint.retry_at),
        (0, None),
        "one request's failures are not the blueprint's: {:?}",
        blueprint.last_failure
    );
    let out = env.ok(&["blueprint", "show", "working-copy"]).await;
    assert!(!out.contains("failing"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_copy_whose_host_is_released_breaks_and_the_next_lease_gets_a_new_one() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let repo = format!("repository={}", origin.display());
    let args = [
        "--attr",
        &repo,
        "--attr",
        "ref=main",
        "--wait",
        "--timeout",
        "90s",
    ];
    let copy_of = |lease: ObjectId| {
        let store = store.clone();
        async move { store.lease_get(lease).await.unwrap().resource_id.unwrap() }
    };
    // The host a copy stands on, through its supporting lease.
    let host_of = |copy: ObjectId| {
        let store = store.clone();
        async move {
            let supporting = store.lease_list_supporting(copy).await.unwrap();
            supporting[0].resource_id.unwrap()
        }
    };
    // Releases the host under `copy`, and waits until the copy has broken for it.
    let release_host_under = |copy: ObjectId| {
        let (env, store) = (&env, store.clone());
        async move {
            let host = host_of(copy).await;
            env.ok(&["resource", "release", &host.to_string()]).await;
            wait_resource(&store, copy, ResourceStatus::Destroyed).await;
            let end = store.resource_get(copy).await.unwrap().end.unwrap();
            assert!(
                end.is_failure() && end.to_string().contains("supporting lease"),
                "{copy} ended {end}"
            );
        }
    };

    // An idle copy: its lease released, the copy kept for the next one.
    let first = env.request("working-copy", &args).await[0];
    let idle = copy_of(first).await;
    env.ok(&["lease", "release", &first.to_string()]).await;
    wait_lease(&store, first, LeaseStatus::Destroyed).await;
    release_host_under(idle).await;
    let second = env.request("working-copy", &args).await[0];
    let leased = copy_of(second).await;
    assert_ne!(leased, idle, "the next lease got a new copy");

    // A leased copy: its lease ends with it, and the next lease gets a new copy again.
    release_host_under(leased).await;
    wait_lease(&store, second, LeaseStatus::Destroyed).await;
    let third = env.request("working-copy", &args).await[0];
    wait_lease(&store, third, LeaseStatus::Active).await;
    assert_ne!(copy_of(third).await, leased);
}
