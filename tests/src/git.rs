//! Throwaway git repositories for the working-copy tests and benchmarks.

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` with a fixed identity; its trimmed output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with a tagged first commit (`v1`) and a second one on `main`.
pub fn repository(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(dir.join("file"), "one").unwrap();
    git(dir, &["add", "file"]);
    git(dir, &["commit", "--quiet", "-m", "one"]);
    git(dir, &["tag", "v1"]);
    let first = git(dir, &["rev-parse", "HEAD"]);
    std::fs::write(dir.join("file"), "two").unwrap();
    git(dir, &["commit", "--quiet", "-am", "two"]);
    (first, git(dir, &["rev-parse", "HEAD"]))
}
