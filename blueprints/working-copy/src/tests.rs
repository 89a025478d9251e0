use super::*;
use drydock_sdk::testing::{attributes, lease, resource};
use std::path::Path;
use std::process::Command;

fn config() -> Config {
    drydock_sdk::serde_json::from_str(r#"{"directory": "copies"}"#).unwrap()
}

fn wc_lease(pairs: &[(&str, &str)]) -> drydock_sdk::LeaseSnapshot {
    let mut l = lease("L7", "working-copy");
    l.attributes = attributes(pairs.iter().copied());
    l
}

#[test]
fn the_config_keeps_copies_inside_the_hosts_root() {
    for bad in [
        r#"{"directory": "/etc"}"#,
        r#"{"directory": "a/../.."}"#,
        r#"{"directory": ""}"#,
    ] {
        let config: Config = drydock_sdk::serde_json::from_str(bad).unwrap();
        assert!(config.validate().is_err(), "{bad}");
    }
    assert!(config().validate().is_ok());
}

#[test]
fn a_lease_without_a_repository_can_never_be_served() {
    let call = Call::for_test(config()).with_lease(wc_lease(&[]));
    assert_eq!(
        WorkingCopy::can_allocate_resource(&call),
        AllocationVerdict::Never
    );
    let call = Call::for_test(config()).with_lease(wc_lease(&[(REPOSITORY, "/srv/repo.git")]));
    assert_eq!(
        WorkingCopy::can_allocate_resource(&call),
        AllocationVerdict::Yes
    );
}

#[test]
fn a_new_copy_leases_a_host_and_gets_a_directory_of_its_own() {
    let call = Call::for_test(config()).with_lease(wc_lease(&[(REPOSITORY, "/srv/repo.git")]));
    let step = WorkingCopy::allocate_resource(&call);
    assert!(step.is_done());
    assert!(step.actions.iter().any(|a| matches!(
        a,
        Action::RequestLease(r) if r.key == HOST && r.resource_type == "host"
    )));
    assert!(step.actions.iter().any(|a| matches!(
        a,
        Action::SetAttribute(attr) if attr.key == PATH && attr.value == "copies/L7-0"
    )));
}

#[test]
fn a_copy_serves_only_leases_of_its_repository_one_at_a_time() {
    let mut copy = resource("R3", "working-copy");
    copy.attributes = attributes([(REPOSITORY, "/srv/a.git"), (PATH, "copies/L1-0")]);
    let same = Call::for_test(config())
        .with_lease(wc_lease(&[(REPOSITORY, "/srv/a.git")]))
        .with_resource(copy.clone());
    assert!(WorkingCopy::can_acquire_lease(&same));
    let other = Call::for_test(config())
        .with_lease(wc_lease(&[(REPOSITORY, "/srv/b.git")]))
        .with_resource(copy);
    assert!(!WorkingCopy::can_acquire_lease(&other));
    let step = WorkingCopy::acquire_lease(&same);
    assert!(
        step.actions
            .contains(&Action::TakeSlotLocks(vec!["working-copy.copy(R3)".into()]))
    );
}

/// Runs one of the scripts as the host would, in `root`.
fn run(root: &Path, script: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .current_dir(root)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with two commits on `main` (the first tagged `v1`) and a branch `topic`.
fn repository(dir: &Path) -> (String, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(dir.join("file"), "one").unwrap();
    git(dir, &["add", "file"]);
    git(dir, &["commit", "--quiet", "-m", "one"]);
    let first = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["tag", "v1"]);
    std::fs::write(dir.join("file"), "two").unwrap();
    git(dir, &["commit", "--quiet", "-am", "two"]);
    let second = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "-b", "topic"]);
    std::fs::write(dir.join("file"), "topic").unwrap();
    git(dir, &["commit", "--quiet", "-am", "topic"]);
    let topic = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "main"]);
    (first, second, topic)
}

#[test]
fn the_scripts_clone_check_out_clean_and_remove_and_may_run_twice() {
    let root = tempfile::tempdir().unwrap();
    let origin = root.path().join("origin");
    let (first, second, topic) = repository(&origin);
    let origin = origin.to_str().unwrap();
    let copy = "copies/L1-0";

    for _ in 0..2 {
        let (ok, _, err) = run(root.path(), script::CLONE, &[copy, origin]);
        assert!(ok, "{err}");
    }
    let checkout = |wanted: &str| run(root.path(), script::CHECKOUT, &[copy, wanted]);
    assert_eq!(checkout("").1, second, "the default branch");
    assert_eq!(checkout("topic").1, topic);
    assert_eq!(checkout("v1").1, first);
    assert_eq!(checkout(&first).1, first);
    let (ok, _, err) = checkout("no-such-branch");
    assert!(
        !ok && err.contains("no branch, tag or commit named no-such-branch"),
        "{err}"
    );

    // Behind: a new commit upstream is fetched by the next checkout.
    std::fs::write(Path::new(origin).join("file"), "three").unwrap();
    git(Path::new(origin), &["commit", "--quiet", "-am", "three"]);
    let third = git(Path::new(origin), &["rev-parse", "HEAD"]);
    assert_eq!(checkout("main").1, third);

    // A dirty tree is clean after CLEAN, and after the next checkout.
    let tree = root.path().join(copy);
    std::fs::write(tree.join("file"), "dirty").unwrap();
    std::fs::write(tree.join("junk"), "junk").unwrap();
    assert!(run(root.path(), script::CLEAN, &[copy]).0);
    assert_eq!(std::fs::read_to_string(tree.join("file")).unwrap(), "three");
    assert!(!tree.join("junk").exists());

    for _ in 0..2 {
        assert!(run(root.path(), script::REMOVE, &[copy]).0);
    }
    assert!(!tree.exists());
    let (ok, _, err) = run(root.path(), script::CLONE, &[copy, "/no/such/repository"]);
    assert!(!ok && !err.is_empty());
}
