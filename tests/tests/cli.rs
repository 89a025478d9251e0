//! `drydock blueprint check`, run as the real binary on the built components.

use drydock_tests::{FUTURE_CONTRACT_WASM, HOST_POOL_CONFIG, HOST_POOL_WASM, drydock_binary};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn drydock(args: &[&str], stdin: Option<&str>) -> Output {
    // One compile cache for the whole test binary, so each component is compiled once.
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    let mut child = Command::new(drydock_binary().unwrap())
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_description_and_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hosts.json");
    std::fs::write(&config, HOST_POOL_CONFIG).unwrap();
    let out = drydock(
        &[
            "blueprint",
            "check",
            HOST_POOL_WASM,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("name:             host-pool"), "{stdout}");
    assert!(stdout.contains("resource type:    host"), "{stdout}");
    assert!(
        stdout.contains("contract version: drydock:blueprint@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("\"hosts\""), "{stdout}");
    assert!(stdout.contains("config:           valid"), "{stdout}");
}

#[test]
fn check_prints_json_for_scripts() {
    let out = drydock(&["blueprint", "check", HOST_POOL_WASM, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "host-pool");
    assert_eq!(report["resource_type"], "host");
    assert_eq!(report["contract_version"], "0.2.0");
    assert_eq!(report["config_schema"]["type"], "object");
}

#[test]
fn check_refuses_empty_and_malformed_configs_with_the_reason() {
    for (config, reason) in [
        (r#"{"hosts": []}"#, "`hosts` is empty"),
        (r#"{"hosts": [{"name": "x"}]}"#, "missing field `interface`"),
        ("{", "EOF while parsing"),
    ] {
        let out = drydock(
            &["blueprint", "check", HOST_POOL_WASM, "--config", "-"],
            Some(config),
        );
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{config} was accepted");
        assert!(stderr.contains("config - is invalid"), "{stderr}");
        assert!(stderr.contains(reason), "{config}: {stderr}");
    }
}

#[test]
fn check_refuses_a_bad_component_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let out = drydock(&["blueprint", "check", junk.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        text(&out.stderr)
    );

    let out = drydock(&["blueprint", "check", FUTURE_CONTRACT_WASM], None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("drydock:blueprint@0.3.0") && stderr.contains("drydock:blueprint@0.2.0"),
        "{stderr}"
    );

    let out = drydock(&["blueprint", "check", "/nonexistent/x.wasm"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("reading /nonexistent/x.wasm"),
        "{}",
        text(&out.stderr)
    );
}
