//! SSH hosts for real: a throwaway `sshd` on a loopback port (`drydock_tests::ssh`), host-pool
//! serving it as an `ssh` host, `drydock exec --lease` running there, blueprint execs over it
//! that die on the remote side when their timeout passes or their daemon is killed, and working
//! copies cloned on it whose leases run commands in the copy.

use drydock_host::domain::LeaseStatus;
use drydock_host::store::Store;
use drydock_tests::git::repository;
use drydock_tests::ssh::SshServer;
use drydock_tests::{
    Daemon, Env, HOST_POOL_WASM, SHELL_WASM, USE_HOST_POOL, WORKING_COPY_WASM, wait_for, wait_lease,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A database with host-pool serving `server` as its only host, granted, and every `drydock`
/// trusting the server's host key.
async fn env_with_ssh_host(server: &SshServer) -> Env {
    let mut env = Env::new();
    env.use_ssh(server);
    let hosts = format!(r#"{{"hosts": [{}]}}"#, server.host_entry("remote-1"));
    let grants = server.grants();
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    env.add_blueprint("host-pool", HOST_POOL_WASM, &hosts, &grants)
        .await;
    env
}

/// `drydock exec --lease LEASE -- ARGV…`; its output.
async fn exec_on(env: &Env, lease: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", "--lease", lease, "--"];
    args.extend_from_slice(argv);
    env.ok(&args).await
}

/// Whether the process `pid` (as a file's text) is gone, or a zombie no one reaped yet.
fn is_dead(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    stat.is_err() || stat.is_ok_and(|stat| stat.split(' ').nth(2) == Some("Z"))
}

/// The pids a remote command wrote to `files` in `dir`, once they are all there.
async fn pids(dir: &Path, files: &[&str]) -> Vec<String> {
    wait_for("the remote command to start", || async {
        files
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .filter(|pid| pid.as_deref().is_some_and(|p| p.ends_with('\n')))
            .collect::<Option<Vec<String>>>()
    })
    .await
}

/// Waits until every process in `pids` is dead.
async fn wait_dead(pids: &[String], why: &str) {
    wait_for(why, || async {
        pids.iter().all(|p| is_dead(p)).then_some(())
    })
    .await;
}

/// A blueprint exec under way on an SSH host: the shell blueprint runs a command there that
/// records its pid and a background child's, then sleeps.
struct RemoteSleep {
    env: Env,
    daemon: Daemon,
    /// The command's pid and its child's, as written.
    pids: Vec<String>,
    _marks: tempfile::TempDir,
    _server: SshServer,
}

/// Starts a [`RemoteSleep`] whose exec times out after `timeout_ms`; returns once it runs.
async fn sleep_remotely(timeout_ms: u32) -> RemoteSleep {
    let server = SshServer::start();
    let env = env_with_ssh_host(&server).await;
    let marks = tempfile::tempdir().unwrap();
    let script = format!(
        "sleep 300 & echo $! > {d}/child; echo $$ > {d}/command; wait",
        d = marks.path().display()
    );
    let shell = json!({"argv": ["sh", "-c", script], "timeout_ms": timeout_ms});
    env.add_blueprint("shell", SHELL_WASM, &shell.to_string(), &[USE_HOST_POOL])
        .await;
    let daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    let pids = pids(marks.path(), &["command", "child"]).await;
    assert!(!pids.iter().any(|p| is_dead(p)), "it started");
    RemoteSleep {
        env,
        daemon,
        pids,
        _marks: marks,
        _server: server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drydock_exec_runs_on_an_ssh_host_from_host_pool() {
    let server = SshServer::start();
    let env = env_with_ssh_host(&server).await;
    let store: Arc<dyn Store> = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("host", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;

    let lease = lease.to_string();
    let out = exec_on(&env, &lease, &["sh", "-c", "echo $SSH_CONNECTION"]).await;
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"127.0.0.1"), "{out}");
    assert_eq!(
        fields.last(),
        Some(&server.port.to_string().as_str()),
        "{out}"
    );

    let failed = env
        .drydock(&["exec", "--lease", &lease, "--", "sh", "-c", "exit 7"])
        .await;
    assert_eq!(
        failed.status.code(),
        Some(7),
        "the remote exit code comes back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_timeout_kills_the_remote_command_and_its_children() {
    let run = sleep_remotely(1_000).await;
    wait_dead(&run.pids, "the timeout to kill the remote command").await;
    let store = run.env.store().await;
    let shell = wait_for("the shell resource to record its exec", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources
            .into_iter()
            .find(|r| r.resource_type == "shell" && r.attributes.contains_key("exit"))
    })
    .await;
    assert_eq!(shell.attributes["exit"], "none", "{shell:?}");
    assert!(
        shell.attributes["stderr"].contains("timed out after 1s"),
        "{shell:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_takes_its_remote_commands_with_it() {
    let mut run = sleep_remotely(600_000).await;
    run.daemon.kill9().await;
    wait_dead(&run.pids, "the remote command to die with its daemon").await;
}

/// A directory removed when the test ends, pass or fail.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_copies_are_cloned_checked_out_and_removed_on_an_ssh_host() {
    let server = SshServer::start();
    let env = env_with_ssh_host(&server).await;
    // Paths over SSH lead from the remote user's home: the copies go in a directory of this
    // test's own there.
    let directory = format!("drydock-test-copies-{}", std::process::id());
    let copies = RemoveOnDrop(server.home().join(&directory));
    let config = json!({"directory": directory}).to_string();
    env.add_blueprint("working-copy", WORKING_COPY_WASM, &config, &[USE_HOST_POOL])
        .await;
    let world = tempfile::tempdir().unwrap();
    let origin = world.path().join("origin");
    let (first, _) = repository(&origin);
    let store = env.store().await;
    let _daemon = env.serve(&[]);

    let repo = format!("repository={}", origin.display());
    let lease = env
        .request(
            "working-copy",
            &[
                "--attr",
                &repo,
                "--attr",
                "ref=v1",
                "--wait",
                "--timeout",
                "90s",
            ],
        )
        .await[0];
    let lease = store.lease_get(lease).await.unwrap();
    assert_eq!(lease.attributes.get("commit"), Some(&first));
    let copy = store
        .resource_get(lease.resource_id.unwrap())
        .await
        .unwrap();
    let path = server.home().join(&copy.attributes["path"]);
    assert!(path.starts_with(&copies.0), "{path:?}");
    let head = drydock_tests::git::git(&path, &["rev-parse", "HEAD"]);
    assert_eq!(head.trim(), first, "the copy on the SSH host is at the ref");

    // The lease's own interface narrows the host's to the copy, over SSH too.
    let lease_id = lease.id.to_string();
    let out = exec_on(&env, &lease_id, &["git", "log", "-1", "--format=%H"]).await;
    assert_eq!(out.trim(), first, "git log -1 over ssh, in the copy");
    let out = exec_on(&env, &lease_id, &["sh", "-c", "echo $SSH_CONNECTION"]).await;
    assert!(out.ends_with(&format!(" {}\n", server.port)), "{out}");

    env.ok(&["lease", "release", &lease.id.to_string()]).await;
    env.ok(&["resource", "release", &copy.id.to_string()]).await;
    wait_for("the copy to be removed from the SSH host", || async {
        (!path.exists()).then_some(())
    })
    .await;
}
