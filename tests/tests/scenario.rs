//! `drydock blueprint test`: language-neutral scenario files drive a component through a lease's
//! life with canned exec results and compare what came out, without a daemon. The example
//! scenario of `blueprints/working-copy` passes; a wrong expectation fails with a readable diff;
//! a bad scenario is refused naming what is wrong. (`languages.rs` runs the Python and
//! JavaScript blueprints' scenarios.)

use drydock_tests::{Env, WORKING_COPY_WASM};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The working-copy blueprint's example scenario, as JSON.
fn example() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/working-copy/scenario.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes `scenario` into the env's directory and runs `drydock blueprint test` on it with the
/// working-copy component.
async fn run(env: &Env, scenario: &Value) -> (Output, String) {
    let path: PathBuf = env.dir().join("scenario.json");
    std::fs::write(&path, scenario.to_string()).unwrap();
    let out = env
        .drydock(&[
            "blueprint",
            "test",
            path.to_str().unwrap(),
            "--wasm",
            WORKING_COPY_WASM,
        ])
        .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[tokio::test]
async fn the_working_copy_example_scenario_passes() {
    let env = Env::new();
    let (out, text) = run(&env, &example()).await;
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("ok "), "{text}");
}

#[tokio::test]
async fn a_wrong_expectation_fails_with_what_was_wanted_and_what_came() {
    let env = Env::new();
    let mut scenario = example();
    scenario["expect"]["lease_attributes"]["commit"] = json!("fff0000");
    scenario["execs"].as_object_mut().unwrap().remove("remove");
    let (out, text) = run(&env, &scenario).await;
    assert!(!out.status.success(), "{text}");
    for line in [
        "FAIL ",
        "lease attribute \"commit\":",
        "want: \"fff0000\"",
        "got:  \"0123abc\"",
        "exec \"remove\":",
        "want: a result in the scenario's `execs`",
        "1 of 1 scenarios failed",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_failing_clone_is_a_failure_the_scenario_can_expect() {
    let env = Env::new();
    let mut scenario = example();
    scenario["execs"]["clone"] = json!({"exit": 128, "stderr": "fatal: repository not found"});
    scenario["expect"] = json!({
        "failure": "cloning https://example.com/repo.git exited with 128: fatal: repository not found",
        "hooks": ["allocate-resource", "activate-resource"],
        "execs": ["clone"]
    });
    let (out, text) = run(&env, &scenario).await;
    assert!(out.status.success(), "{text}");

    scenario["expect"]["failure"] = Value::Null;
    let (out, text) = run(&env, &scenario).await;
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("how the lifecycle ended:\n    want: complete"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bad_scenario_is_refused_naming_what_is_wrong() {
    let env = Env::new();
    let mut scenario = example();
    scenario["expect"]["lease_atributes"] = json!({});
    let (out, text) = run(&env, &scenario).await;
    assert!(!out.status.success());
    assert!(text.contains("is not valid"), "{text}");
    assert!(text.contains("unknown field `lease_atributes`"), "{text}");
}
