//! The CLI against a database: JSON shapes for scripts, and refusals that change nothing.

use drydock_host::store::{Command, CommandFilter, LogEntry, ObjectId, StepRecord, Store};
use drydock_tests::{
    COUNTING_WASM, Env, HOST_POOL_CONFIG, HOST_POOL_GRANT, HOST_POOL_WASM, wait_for, wait_lease,
};
use serde_json::Value;
use std::sync::Arc;

/// Everything a refused command must leave as it was.
async fn snapshot(store: &Arc<dyn Store>) -> String {
    let blueprints = store.blueprint_list().await.unwrap();
    let leases = store.lease_list(None).await.unwrap();
    let resources = store.resource_list(None).await.unwrap();
    let commands = store.command_list(&CommandFilter::default()).await.unwrap();
    let logs = store.log_list(None, 0, i64::MAX).await.unwrap();
    format!("{blueprints:?}\n{leases:?}\n{resources:?}\n{commands:?}\n{logs:?}")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_goes_through_the_cli_with_json_for_scripts() {
    let env = Env::new();
    env.add_host_pool().await;
    let _daemon = env.serve(&[]);

    let requested = json(
        &env.ok(&[
            "lease",
            "request",
            "--type",
            "host",
            "--attr",
            "purpose=ci",
            "--json",
        ])
        .await,
    );
    let id = requested[0]["id"].as_str().unwrap().to_string();
    assert_eq!(requested[0]["status"], "pending");
    let store = env.store().await;
    wait_for("the lease to be active", || async {
        let lease = json(&env.ok(&["lease", "show", &id, "--json"]).await);
        (lease["status"] == "active").then_some(())
    })
    .await;
    let lease = json(&env.ok(&["lease", "show", &id, "--json"]).await);
    assert_eq!(lease["resource_type"], "host");
    assert_eq!(lease["resource_id"], "R1");
    assert_eq!(lease["attributes"]["purpose"], "ci");

    let listed = json(
        &env.ok(&["lease", "list", "--status", "active", "--json"])
            .await,
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let resources = json(&env.ok(&["resource", "list", "--json"]).await);
    assert_eq!(resources[0]["attributes"]["name"], "local-1");
    let resource = json(&env.ok(&["resource", "show", "R1", "--json"]).await);
    assert_eq!(
        resource["slot_locks"][0]["name"],
        "B1:host-pool.host(local-1)"
    );
    assert_eq!(resource["leases"][0]["id"], id.as_str());

    // A command on the leased host, through the interface host-pool gives (local, its root).
    let out = env
        .drydock(&[
            "exec",
            "--lease",
            &id,
            "--",
            "sh",
            "-c",
            "pwd; echo oops >&2; exit 3",
        ])
        .await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/tmp/drydock");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "oops");

    env.ok(&["lease", "release", &id]).await;
    wait_for("the release to be consumed", || async {
        let commands = json(
            &env.ok(&["command", "list", "--target", &id, "--json"])
                .await,
        );
        (commands[0]["consumed_at"] != Value::Null).then_some(commands)
    })
    .await;
    let commands = json(
        &env.ok(&["command", "list", "--target", &id, "--json"])
            .await,
    );
    let command = &commands[0];
    assert_eq!(command["target"], id.as_str());
    assert_eq!(command["kind"], "release");
    assert_eq!(command["author"], "cli:tester");
    assert!(command["created_at"].is_u64());
    assert_eq!(command["outcome"], "applied");
    assert!(
        json(&env.ok(&["command", "list", "--pending", "--json"]).await)
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Destroyed in the run that consumed the release, which gave the claim back.
    let shown = env.ok(&["lease", "show", &id]).await;
    assert!(shown.contains("status:        destroyed"), "{shown}");
    assert!(shown.contains("work:          idle"), "{shown}");
    let out = env.drydock(&["exec", "--lease", &id, "--", "true"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{id} is destroyed: only an active lease can run commands"
        )),
        "{stderr}"
    );

    let logs = json(&env.ok(&["log", "--object", &id, "--json"]).await);
    let types: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "lease.queued",
            "lease.acquired",
            "lease.activated",
            "lease.released",
            "lease.destroyed"
        ]
    );
    assert_eq!(logs[0]["object"], id.as_str());
    assert!(logs[0]["time"].is_u64() && logs[0]["message"].is_string());

    let again = env.drydock(&["lease", "release", &id]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains(&format!("{id} is destroyed; it cannot be released"))
    );
    assert_eq!(store.lease_list(None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_shows_progress_and_fails_when_the_lease_fails() {
    let env = Env::new();
    env.add_host_pool().await;
    let _daemon = env.serve(&[]);
    let ok = env
        .drydock(&[
            "lease",
            "request",
            "--type",
            "host",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    assert!(ok.status.success());
    let progress = String::from_utf8_lossy(&ok.stderr);
    assert!(progress.contains("lease.activated"), "{progress}");

    // No blueprint makes this type: the lease breaks and --wait says so.
    let failed = env
        .drydock(&[
            "lease",
            "request",
            "--type",
            "vm",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("lease.no-blueprints"), "{stderr}");
    assert!(stderr.contains("failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_refused_with_a_reason_and_changes_nothing() {
    let env = Env::new();
    env.add_host_pool().await;
    env.ok(&["lease", "request", "--type", "host"]).await;
    let store = env.store().await;
    let before = snapshot(&store).await;

    let junk = env.dir().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let empty = env.dir().join("empty.json");
    std::fs::write(&empty, r#"{"hosts": []}"#).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["lease", "show", "L999"], "L999 does not exist"),
        (vec!["lease", "show", "R1"], "R1 is a resource, not a lease"),
        (
            vec!["lease", "show", "banana"],
            "\"banana\" is not an object id",
        ),
        (vec!["lease", "release", "L999"], "L999 does not exist"),
        (
            vec!["lease", "request", "--type", "host", "--attr", "novalue"],
            "\"novalue\" is not KEY=VALUE",
        ),
        (
            vec!["lease", "request", "--type", "host", "--attr", "Bad Key=1"],
            "attribute key \"Bad Key\" is malformed",
        ),
        (
            vec!["lease", "request", "--type", "host", "--blueprint", "nope"],
            "no blueprint \"nope\"",
        ),
        (
            vec!["lease", "request", "--type", "host", "--until", "soon"],
            "invalid value 'soon' for '--until",
        ),
        (
            vec!["lease", "list", "--status", "happy"],
            "\"happy\" is not a status",
        ),
        (vec!["resource", "reclaim", "R9"], "R9 does not exist"),
        (
            vec![
                "blueprint",
                "add",
                "pool2",
                "--wasm",
                junk.to_str().unwrap(),
            ],
            "not a valid WebAssembly component",
        ),
        (
            vec![
                "blueprint",
                "add",
                "pool3",
                "--wasm",
                HOST_POOL_WASM,
                "--config",
                empty.to_str().unwrap(),
            ],
            "`hosts` is empty",
        ),
        (
            vec![
                "blueprint",
                "add",
                "host-pool",
                "--wasm",
                HOST_POOL_WASM,
                "--config",
                empty.to_str().unwrap(),
            ],
            "`hosts` is empty",
        ),
        (
            vec!["blueprint", "add", "Bad Name", "--wasm", HOST_POOL_WASM],
            "blueprint name \"Bad Name\" is malformed",
        ),
        (vec!["blueprint", "show", "nope"], "no blueprint \"nope\""),
        (
            vec!["blueprint", "update", "host-pool"],
            "nothing to update: give a new component, a new config or both",
        ),
        (
            vec!["blueprint", "update", "host-pool", "--wasm", COUNTING_WASM],
            "host-pool makes \"host\" resources; the new component makes \"counted\"",
        ),
        (
            vec![
                "blueprint",
                "update",
                "host-pool",
                "--config",
                empty.to_str().unwrap(),
            ],
            "`hosts` is empty",
        ),
        (
            vec![
                "blueprint",
                "update",
                "nope",
                "--config",
                empty.to_str().unwrap(),
            ],
            "no blueprint \"nope\"",
        ),
        (
            vec!["lease", "release", "L1", "L999", "L1"],
            "L999 does not exist; nothing was queued",
        ),
        (
            vec![
                "lease",
                "request",
                "--type",
                "host",
                "--until",
                "292300000y",
            ],
            "at most 10 years (3650d)",
        ),
        (
            vec![
                "lease",
                "request",
                "--type",
                "host",
                "--until",
                "18446744073709551615s",
            ],
            "at most 10 years (3650d)",
        ),
        (
            vec!["blueprint", "grant", "host-pool", "local:relative"],
            "must be an absolute, normalised path",
        ),
        (
            vec!["blueprint", "grant", "host-pool", "ssh:-oProxyCommand=x@h"],
            "not starting with '-'",
        ),
        (
            vec!["blueprint", "revoke", "host-pool", "local:/elsewhere"],
            "host-pool has no grant local:/elsewhere to revoke",
        ),
    ];
    for (args, reason) in cases {
        let out = env.drydock(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(reason),
            "{args:?}: {stderr:?} lacks {reason:?}"
        );
        assert_eq!(
            snapshot(&store).await,
            before,
            "{args:?} changed the database"
        );
    }

    let config = env.dir().join("hosts.json");
    std::fs::write(&config, HOST_POOL_CONFIG).unwrap();
    let taken = env
        .drydock(&[
            "blueprint",
            "add",
            "host-pool",
            "--wasm",
            HOST_POOL_WASM,
            "--config",
            config.to_str().unwrap(),
        ])
        .await;
    assert!(
        String::from_utf8_lossy(&taken.stderr)
            .contains("a blueprint named \"host-pool\" already exists")
    );
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprints_can_be_listed_disabled_and_enabled() {
    let env = Env::new();
    env.add_host_pool().await;
    let listed = json(&env.ok(&["blueprint", "list", "--json"]).await);
    assert_eq!(
        (listed[0]["id"].as_str(), listed[0]["enabled"].as_bool()),
        (Some("B1"), Some(true))
    );
    env.ok(&["blueprint", "disable", "host-pool"]).await;
    let shown = json(&env.ok(&["blueprint", "show", "B1", "--json"]).await);
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["resource_type"], "host");

    let _daemon = env.serve(&[]);
    let refused = env
        .drydock(&[
            "lease",
            "request",
            "--type",
            "host",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    assert!(!refused.status.success(), "a disabled blueprint allocated");
    env.ok(&["blueprint", "enable", "B1"]).await;
    env.ok(&[
        "lease",
        "request",
        "--type",
        "host",
        "--wait",
        "--timeout",
        "60s",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_years_ahead_show_without_trouble() {
    let env = Env::new();
    env.store().await;
    let out = env
        .ok(&["lease", "request", "--type", "host", "--until", "3000d"])
        .await;
    let shown = env.ok(&["lease", "show", out.trim()]).await;
    assert!(shown.contains("until:         20"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_kept_shown_and_changed_by_the_operator() {
    let env = Env::new();
    env.add_blueprint(
        "host-pool",
        HOST_POOL_WASM,
        HOST_POOL_CONFIG,
        &[HOST_POOL_GRANT, "ssh:ci@build-*.example.com"],
    )
    .await;
    let shown = env.ok(&["blueprint", "show", "host-pool"]).await;
    assert!(
        shown.contains("grants:        local:/tmp/drydock, ssh:ci@build-*.example.com"),
        "{shown}"
    );
    env.ok(&[
        "blueprint",
        "revoke",
        "host-pool",
        "ssh:ci@build-*.example.com",
    ])
    .await;
    let changed = env
        .ok(&[
            "blueprint",
            "grant",
            "host-pool",
            "ssh-key:/etc/drydock/keys",
        ])
        .await;
    assert!(
        changed.contains("grants: local:/tmp/drydock, ssh-key:/etc/drydock/keys"),
        "{changed}"
    );
    let log = env.ok(&["log", "--object", "B1"]).await;
    assert!(
        log.contains("grants changed by cli:tester from [local:/tmp/drydock] to [local:/tmp/drydock, ssh-key:/etc/drydock/keys]"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supporting_leases_belong_to_their_resource() {
    let env = Env::new();
    let root = env.dir().join("host");
    let hosts = format!(
        r#"{{"hosts": [{{"name": "local-1", "interface": {{"type": "local", "root": "{}"}}}}]}}"#,
        root.display()
    );
    let grant = format!("local:{}", root.display());
    env.add_blueprint("host-pool", HOST_POOL_WASM, &hosts, &[&grant])
        .await;
    env.add_blueprint(
        "shell",
        drydock_tests::SHELL_WASM,
        r#"{"argv": ["true"]}"#,
        &[drydock_tests::USE_HOST_POOL],
    )
    .await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let shell = env
        .ok(&[
            "lease",
            "request",
            "--type",
            "shell",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    let shell = shell.trim();
    let supporting = wait_for("the host lease of the shell resource", || async {
        let leases = store.lease_list(None).await.unwrap();
        leases.into_iter().find(|l| l.parent_resource_id.is_some())
    })
    .await;
    let out = env
        .drydock(&["lease", "release", &supporting.id.to_string()])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a supporting lease of R1: it belongs to that resource"),
        "{stderr}"
    );
    let all = env.ok(&["lease", "release", "--all"]).await;
    assert!(all.contains(&format!("{shell}: release queued")), "{all}");
    assert!(!all.contains(&supporting.id.to_string()), "{all}");
    let parent = supporting.parent_resource_id.unwrap().to_string();
    env.ok(&["resource", "release", &parent]).await;
    wait_for("the host lease to go with its resource", || async {
        let lease = store.lease_get(supporting.id).await.unwrap();
        (lease.status == drydock_host::domain::LeaseStatus::Destroyed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_only_what_finished_before_the_retention() {
    let env = Env::new();
    env.add_host_pool().await;
    let store = env.store().await;
    let daemon = env.serve(&[]);
    let request = [
        "lease",
        "request",
        "--type",
        "host",
        "--wait",
        "--timeout",
        "60s",
    ];
    let active: ObjectId = env.ok(&request).await.trim().parse().unwrap();
    let lease = env.ok(&request).await;
    let lease = lease.trim();
    env.ok(&["lease", "release", lease]).await;
    wait_for("the lease to be destroyed", || async {
        let id = lease.parse().unwrap();
        (store.lease_get(id).await.unwrap().status == drydock_host::domain::LeaseStatus::Destroyed)
            .then_some(())
    })
    .await;
    assert!(daemon.terminate().await);
    let resource = store.lease_get(active).await.unwrap().resource_id.unwrap();
    let live = [active, resource, ObjectId::Blueprint(1)];
    let mut before = Vec::new();
    for object in live {
        before.push(history(&store, object).await);
    }
    assert!(
        !before[0].1.is_empty(),
        "the active lease has an audit trail"
    );
    let kept = env.ok(&["gc", "--json"]).await;
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["leases"], 0, "nothing is 30 days old: {kept}");
    let report = env.ok(&["gc", "--older-than", "0s", "--json"]).await;
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["leases"], 1, "{report}");
    assert!(report["logs"].as_u64().unwrap() > 0, "{report}");
    let out = env.drydock(&["lease", "show", lease]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(
        env.ok(&["resource", "list"]).await.contains("active"),
        "the live resource stays"
    );
    for (object, before) in live.into_iter().zip(before) {
        assert_eq!(
            history(&store, object).await,
            before,
            "{object} keeps its whole history"
        );
    }
    let gone = history(&store, lease.parse().unwrap()).await;
    assert_eq!(
        gone,
        Default::default(),
        "the destroyed lease's history went"
    );
}

/// An object's log entries, audit trail and commands.
async fn history(
    store: &Arc<dyn Store>,
    object: ObjectId,
) -> (Vec<LogEntry>, Vec<StepRecord>, Vec<Command>) {
    let commands = CommandFilter {
        target: Some(object),
        pending: false,
    };
    (
        store.log_list(Some(object), 0, i64::MAX).await.unwrap(),
        store.step_list(object, 0, i64::MAX).await.unwrap(),
        store.command_list(&commands).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blueprint_updated_in_place_serves_leases_its_old_config_could_not() {
    let env = Env::new();
    env.add_host_pool().await;
    let _daemon = env.serve(&[]);
    let store = env.store().await;
    let refused = env.request_one("host", &["--attr", "host=local-2"]).await;
    wait_for("the lease for an unknown host to fail", || async {
        let logs = store.log_list(Some(refused), 0, 100).await.unwrap();
        logs.iter()
            .any(|l| l.kind == "lease.allocation-failure")
            .then_some(())
    })
    .await;

    let two_hosts = env.dir().join("two-hosts.json");
    let config = HOST_POOL_CONFIG.replace(
        "]}",
        r#", {"name": "local-2", "interface": {"type": "local", "root": "/tmp/drydock"}}]}"#,
    );
    std::fs::write(&two_hosts, &config).unwrap();
    let update = ["blueprint", "update", "host-pool", "--config"];
    let said = env
        .ok(&[&update[..], &[two_hosts.to_str().unwrap()]].concat())
        .await;
    assert!(
        said.starts_with("B1 host-pool updated to version 2"),
        "{said}"
    );
    let served = env.request_one("host", &["--attr", "host=local-2"]).await;
    wait_lease(&store, served, drydock_host::domain::LeaseStatus::Active).await;

    let shown = json(&env.ok(&["blueprint", "show", "host-pool", "--json"]).await);
    assert_eq!(shown["config"], config.as_str());
    assert_eq!(shown["version"], 2);
    let history = env.ok(&["log", "--object", "B1"]).await;
    assert!(
        history.contains("blueprint.updated") && history.contains("updated by cli:"),
        "{history}"
    );
    // The component it has already: allowed, and logged as no change.
    env.ok(&["blueprint", "update", "host-pool", "--wasm", HOST_POOL_WASM])
        .await;
    let history = env.ok(&["log", "--object", "B1"]).await;
    assert!(history.contains("nothing changed"), "{history}");
}
