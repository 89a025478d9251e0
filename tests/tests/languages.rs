//! Blueprints in Python and JavaScript, built with the Bytecode Alliance componentizers
//! (`blueprints/scratch-py`, `blueprints/scratch-js`): each is checked and driven through a whole
//! lifecycle by `drydock blueprint check --lifecycle` and its scenario by `drydock blueprint
//! test` (no daemon), then serves leases from a daemon. The componentizers must be installed (`scripts/test.sh` does); a missing one fails.

use drydock_tests::{Env, LIFECYCLE_HOOKS, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Builds `blueprints/<folder>` with its `build.sh` into `target/guests/<folder>.wasm`.
fn build(folder: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = workspace
        .join("target/guests")
        .join(format!("{folder}.wasm"));
    drydock_tests::componentize(folder, &out);
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// What both languages' scratch blueprints must do, alike.
async fn scratch_blueprint(folder: &str) {
    let wasm = build(folder);
    let wasm = wasm.to_str().unwrap();
    let env = Env::new();
    let root = env.dir().join("scratch");
    let root = root.to_str().unwrap();
    let config = json!({"root": root, "limit": 2}).to_string();
    let config_file = env.dir().join("config.json");
    std::fs::write(&config_file, &config).unwrap();
    let config_file = config_file.to_str().unwrap();
    let grant = format!("local:{root}");

    // Without a daemon: describe, validate, and the whole life on in-memory snapshots.
    let report = json(
        &env.ok(&[
            "blueprint",
            "check",
            wasm,
            "--config",
            config_file,
            "--lifecycle",
            "--grant",
            &grant,
            "--json",
        ])
        .await,
    );
    assert_eq!(
        (&report["name"], &report["resource_type"]),
        (&json!(folder), &json!("scratch"))
    );
    assert_eq!(report["config_schema"]["required"], json!(["root"]));
    let lifecycle = &report["lifecycle"];
    assert_eq!(lifecycle["failure"], Value::Null, "{lifecycle}");
    let hooks: Vec<&str> = lifecycle["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hook"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, LIFECYCLE_HOOKS);
    let slot0 = format!("{root}/slot-0");
    assert_eq!(
        lifecycle["calls"][0]["steps"][0]["actions"][0],
        json!({"take-slot-locks": [format!("scratch-dir({slot0})")]})
    );
    assert_eq!(
        lifecycle["interface"],
        json!({"type": "local", "root": slot0})
    );

    // Its scenario, the same for both languages, passes with `drydock blueprint test`.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../blueprints")
        .join(folder)
        .join("scenario.json");
    let out = env
        .ok(&[
            "blueprint",
            "test",
            scenario.to_str().unwrap(),
            "--wasm",
            wasm,
        ])
        .await;
    assert!(out.starts_with("ok "), "{out}");

    // Its own config check, with its own words.
    let bad = env.dir().join("bad.json");
    std::fs::write(&bad, r#"{"root": "relative/path"}"#).unwrap();
    let out = env
        .drydock(&[
            "blueprint",
            "check",
            wasm,
            "--config",
            bad.to_str().unwrap(),
        ])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("root must be an absolute path without spaces"),
        "{stderr}"
    );

    // In the daemon: one lease per directory, commands run in it, released and destroyed.
    env.add_blueprint(folder, wasm, &config, &[&grant]).await;
    let _daemon = env.serve(&[]);
    let mut leases = Vec::new();
    for _ in 0..2 {
        let out = env
            .ok(&[
                "lease",
                "request",
                "--type",
                "scratch",
                "--wait",
                "--timeout",
                "120s",
            ])
            .await;
        leases.push(out.trim().to_string());
    }
    let mut paths = Vec::new();
    for lease in &leases {
        let out = env.ok(&["exec", "--lease", lease, "--", "pwd"]).await;
        paths.push(out.trim().to_string());
    }
    paths.sort();
    assert_eq!(paths, [slot0.clone(), format!("{root}/slot-1")]);

    for lease in &leases {
        env.ok(&["lease", "release", lease]).await;
    }
    for lease in &leases {
        wait_for("the lease to be destroyed", || async {
            let shown = json(&env.ok(&["lease", "show", lease, "--json"]).await);
            (shown["status"] == "destroyed").then_some(())
        })
        .await;
    }
    let logs = json(&env.ok(&["log", "--json"]).await);
    let released = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "lease.blueprint")
        .count();
    assert_eq!(released, 2, "each release hook logged once: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_blueprint_serves_leases() {
    scratch_blueprint("scratch-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_blueprint_serves_leases() {
    scratch_blueprint("scratch-js").await;
}
