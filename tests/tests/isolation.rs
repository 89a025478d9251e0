//! Invariant I4 end to end: hostile blueprints registered beside the healthy `host-pool`, each
//! misbehaving in the daemon, while a `host` lease is still served. Each test shows the refusal
//! (or the bound) and the healthy lease going active meanwhile.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{ObjectId, StepRecord, Store};
use drydock_tests::{
    Env, GARBLED_WASM, MISBEHAVE_WASM, SLEEPY_WASM, WRONG_SHAPE_WASM, steps_are_a_second_apart,
    wait_for, wait_lease,
};
use std::sync::Arc;

/// A database with host-pool (granted its directory) and misbehave in `mode`.
async fn env_with(mode: &str, extra: &str) -> Env {
    let env = Env::new();
    env.add_host_pool().await;
    let config = format!(r#"{{"mode": "{mode}"{extra}}}"#);
    // Authorized to lease from itself, so that a runaway one meets the fan-out limits.
    env.add_blueprint("misbehave", MISBEHAVE_WASM, &config, &["use:misbehave"])
        .await;
    env
}

/// Waits until one of `object`'s log entries contains `text`; returns it.
async fn wait_log(store: &Arc<dyn Store>, object: ObjectId, text: &str) -> String {
    wait_for(&format!("{object} to log {text:?}"), || async {
        let logs = store.log_list(Some(object), 0, 100_000).await.unwrap();
        logs.into_iter()
            .map(|l| l.message)
            .find(|m| m.contains(text))
    })
    .await
}

/// A healthy host lease goes active while the hostile ones are in flight.
async fn healthy_lease_is_served(env: &Env, store: &Arc<dyn Store>) {
    let healthy = env.request_one("host", &[]).await;
    wait_lease(store, healthy, LeaseStatus::Active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_blueprint_is_stopped_at_its_deadline_and_takes_no_worker_for_long() {
    let env = env_with("sleep", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&["--workers", "4", "--blueprint-calls", "1"]);
    let sleepers = env.request("trouble", &["--count", "4"]).await;
    healthy_lease_is_served(&env, &store).await;
    let reason = wait_log(&store, sleepers[0], "exceeded its 1s deadline").await;
    assert!(reason.contains("in a blocking call"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yields_are_at_least_the_minimum_apart() {
    let env = env_with("yield0", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let yielder = env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    // Each allocation call is in the lease's audit trail (its log says it waits once).
    let allocations = |s: &StepRecord| s.hook == "allocate-resource";
    steps_are_a_second_apart(&store, yielder, "yields", allocations).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blueprint_leasing_its_own_type_stops_at_the_depth_limit() {
    let env = env_with("runaway", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let root = env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    wait_for("a refusal at the depth limit", || async {
        let logs = store.log_list(None, 0, 100_000).await.unwrap();
        logs.iter()
            .any(|l| l.message.contains("supporting leases nest at most 4 deep"))
            .then_some(())
    })
    .await;
    let resources = store.resource_list(None).await.unwrap();
    let made = resources
        .iter()
        .filter(|r| r.resource_type == "trouble")
        .count();
    // One per level, depths 0 to 3: the lease at depth 4 is refused at its allocation, which
    // makes no resource.
    assert!(made <= 4, "{made} resources for a chain 4 deep");
    let deepest = resources.iter().map(|r| r.depth).max().unwrap();
    assert!(deepest <= 4, "a resource at depth {deepest}");
    assert!(store.lease_get(root).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blueprint_cannot_take_another_blueprints_slot_lock() {
    let env = env_with("lock-thief", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let thief = env.request_one("trouble", &[]).await;
    wait_lease(&store, thief, LeaseStatus::Active).await;
    healthy_lease_is_served(&env, &store).await;
    let mut locks: Vec<String> = store
        .slot_lock_list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    locks.sort();
    assert_eq!(
        locks,
        ["B1:host-pool.host(local-1)", "B2:host-pool.host(local-1)"],
        "each in its own blueprint's namespace"
    );
}

/// Requests one `trouble` lease and waits until its allocation has trapped (the lease breaks).
async fn trapped_lease(env: &Env, store: &Arc<dyn Store>) -> ObjectId {
    let lease = env.request_one("trouble", &[]).await;
    wait_for("the trapping allocation to break its lease", || async {
        let status = store.lease_get(lease).await.unwrap().status;
        matches!(status, LeaseStatus::Broken | LeaseStatus::Destroyed).then_some(())
    })
    .await;
    lease
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_blueprint_backs_off_and_its_waiting_leases_say_so() {
    let env = env_with("trap", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    // One at a time, so that each is tried after the last failure was counted.
    for _ in 0..3 {
        trapped_lease(&env, &store).await;
    }
    let waiting = env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    let said = wait_log(&store, waiting, "is failing").await;
    assert!(
        said.contains("misbehave is failing (3 allocations or activations in a row; the last: "),
        "{said}"
    );
    assert!(said.contains("and is not used until"), "{said}");
    let out = env.ok(&["blueprint", "show", "misbehave"]).await;
    assert!(out.contains("enabled, failing"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_reset_ends_a_back_off_at_once() {
    let env = env_with("trap", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&["--blueprint-backoff", "10m"]);
    trapped_lease(&env, &store).await;
    let waiting = env.request_one("trouble", &[]).await;
    wait_log(&store, waiting, "and is not used until").await;
    healthy_lease_is_served(&env, &store).await;
    let out = env.ok(&["blueprint", "reset", "misbehave"]).await;
    assert!(out.contains("misbehave"), "{out}");
    // Ten minutes early: the waiting lease is tried (and traps) within the test's patience.
    wait_for("the waiting lease to be tried", || async {
        let status = store.lease_get(waiting).await.unwrap().status;
        matches!(status, LeaseStatus::Broken | LeaseStatus::Destroyed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_three_kinds_failing_in_a_row_blame_the_blueprint() {
    let env = env_with("fail-activation", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    for kind in ["a", "b", "c"] {
        env.request_one("trouble", &["--attr", &format!("kind={kind}")])
            .await;
    }
    healthy_lease_is_served(&env, &store).await;
    let failure = wait_for("misbehave to be blamed", || async {
        let blueprint = store.blueprint_by_name("misbehave").await.unwrap();
        blueprint
            .last_failure
            .filter(|_| blueprint.retry_at.is_some())
    })
    .await;
    assert!(
        failure.starts_with(
            "requests of 3 different kinds failed in a row, so the cause looks like the \
             blueprint's, not theirs; the last: activation fails on purpose"
        ),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_outside_the_grants_runs_nothing_until_granted() {
    let env = env_with("root", r#", "root": "/""#).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("trouble", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let marker = env.dir().join("ran");
    let marker = marker.to_str().unwrap();
    let out = env
        .drydock(&["exec", "--lease", &lease.to_string(), "--", "touch", marker])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("misbehave's interface was refused: the local root \"/\" is outside what the blueprint was granted (use:misbehave)"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(marker).exists(), "nothing ran");
    env.ok(&["blueprint", "grant", "misbehave", "local:/"])
        .await;
    env.ok(&["exec", "--lease", &lease.to_string(), "--", "touch", marker])
        .await;
    assert!(std::path::Path::new(marker).exists(), "granted, it runs");
    let out = env.ok(&["blueprint", "show", "misbehave"]).await;
    assert!(
        out.contains("grants:        use:misbehave, local:/"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_text_cannot_drive_the_terminal() {
    let env = env_with("escapes", "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    let resource = wait_for("the escaping resource", || async {
        let resources = store
            .resource_list(Some(ResourceStatus::Active))
            .await
            .unwrap();
        resources.into_iter().find(|r| r.resource_type == "trouble")
    })
    .await;
    let id = resource.id.to_string();
    for args in [
        vec!["log", "--object", id.as_str()],
        vec!["resource", "show", id.as_str()],
        vec!["resource", "list"],
    ] {
        let out = env.ok(&args).await;
        assert!(!out.contains('\x1b'), "{args:?} printed an escape: {out:?}");
        assert!(
            !out.lines()
                .any(|l| l.starts_with("owner: root") || l.starts_with("L1 lease.destroyed")),
            "{args:?} printed a forged line: {out}"
        );
    }
    let log = env.ok(&["log", "--object", &id]).await;
    assert!(
        log.contains("\\e[2J\\e[31mred\\nL1 lease.destroyed"),
        "{log}"
    );
    assert!(store.lease_get(lease).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_bad_components_naming_what_is_wrong() {
    let env = Env::new();
    let refused = |args: Vec<&'static str>| {
        let env = &env;
        async move {
            let out = env.drydock(&args).await;
            assert!(!out.status.success(), "{args:?} was accepted");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!stderr.contains('\x1b'), "{stderr:?}");
            stderr
        }
    };
    let garbled = refused(vec!["blueprint", "add", "garbled", "--wasm", GARBLED_WASM]).await;
    assert!(
        garbled.contains(
            r#"describes itself badly: resource type "host\u{1b}[2J\nL9 lease.destroyed"#
        ),
        "{garbled}"
    );
    let sleepy = refused(vec!["blueprint", "add", "sleepy", "--wasm", SLEEPY_WASM]).await;
    assert!(
        sleepy.contains("describe exceeded its 1s deadline in a blocking call"),
        "{sleepy}"
    );
    let shape = refused(vec![
        "blueprint",
        "add",
        "shape",
        "--wasm",
        WRONG_SHAPE_WASM,
    ])
    .await;
    assert!(
        shape.contains("its functions do not match this host's contract"),
        "{shape}"
    );
    let big = refused(vec![
        "blueprint",
        "add",
        "big",
        "--wasm",
        MISBEHAVE_WASM,
        "--max-component-mib",
        "0",
    ])
    .await;
    assert!(big.contains("over the limit of 0 bytes"), "{big}");
    let checked = refused(vec!["blueprint", "check", SLEEPY_WASM]).await;
    assert!(
        checked.contains("describe exceeded its 1s deadline"),
        "{checked}"
    );
    assert!(
        env.ok(&["blueprint", "list"]).await.lines().count() <= 1,
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_check_reports_guests_that_print_panic_or_sleep() {
    let env = Env::new();
    for (mode, expected) in [
        ("chatty", None),
        ("trap", Some("allocate-resource trapped")),
        ("sleep", Some("exceeded its 1s deadline in a blocking call")),
    ] {
        let config = env.dir().join(format!("{mode}.json"));
        std::fs::write(&config, format!(r#"{{"mode": "{mode}"}}"#)).unwrap();
        let out = env
            .drydock(&[
                "blueprint",
                "check",
                MISBEHAVE_WASM,
                "--config",
                config.to_str().unwrap(),
                "--lifecycle",
            ])
            .await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_ne!(
            out.status.code(),
            Some(101),
            "{mode}: the CLI crashed: {stderr}"
        );
        match expected {
            None => assert!(
                stdout.contains("printed: [stdout] hello from stdout"),
                "{stdout}"
            ),
            Some(text) => {
                assert_eq!(out.status.code(), Some(1), "{mode}: {stderr}");
                assert!(
                    stderr.contains(text) || stdout.contains(text),
                    "{mode}: {stdout}{stderr}"
                );
            }
        }
    }
}

/// The `random: …` line misbehave's `world` mode logs in allocate-resource, as one
/// `blueprint check --lifecycle --json` run reports it.
async fn checked_random_line(env: &Env, config: &str) -> String {
    let out = env
        .drydock(&[
            "blueprint",
            "check",
            MISBEHAVE_WASM,
            "--config",
            config,
            "--lifecycle",
            "--json",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let call = &report["lifecycle"]["calls"][0];
    assert_eq!(call["hook"], "allocate-resource", "{report}");
    call["steps"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|action| {
            let text = action["log"].as_str()?;
            text.starts_with("random: ").then(|| text.to_string())
        })
        .unwrap_or_else(|| panic!("no random line in {call}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_blueprint_check_runs_draw_different_random_bytes() {
    let env = Env::new();
    let config = env.dir().join("world.json");
    std::fs::write(&config, r#"{"mode": "world"}"#).unwrap();
    let config = config.to_str().unwrap();
    // The same ids and clock in both runs: only the secret differs.
    let first = checked_random_line(&env, config).await;
    let second = checked_random_line(&env, config).await;
    assert_ne!(
        first, second,
        "random bytes are not a function of what the steps show"
    );
}
