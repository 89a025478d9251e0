//! The `drydock` binary's argument handling.

use std::process::Command;

fn drydock(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_commands() {
    let out = drydock(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("blueprint"), "{stdout}");
}

#[test]
fn an_unknown_command_exits_non_zero_and_says_why() {
    let out = drydock(&["frobnicate"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn check_names_a_missing_file() {
    let out = drydock(&["blueprint", "check", "/nonexistent/blueprint.wasm"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("reading /nonexistent/blueprint.wasm"),
        "{stderr}"
    );
}
