//! Exec actions end to end: the `shell` blueprint leases a `host` from host-pool and runs a
//! command there. Execs run with bounds (output, working directory, their own pool), see none
//! of the daemon's environment, follow no link planted beneath a grant, and a blueprint that
//! narrows a granted host needs no grant of its own.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{Resource, Store};
use drydock_tests::{Env, HOST_POOL_WASM, SHELL_WASM, USE_HOST_POOL, wait_for, wait_lease};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A database with host-pool on a host rooted in the test's directory (granted), and the
/// shell blueprint (no grants) running `shell` (its config).
async fn env_with(shell: serde_json::Value) -> (Env, PathBuf) {
    let env = Env::new();
    let root = env.dir().join("host");
    let hosts =
        json!({"hosts": [{"name": "local-1", "interface": {"type": "local", "root": root}}]});
    let grant = format!("local:{}", root.display());
    env.add_blueprint("host-pool", HOST_POOL_WASM, &hosts.to_string(), &[&grant])
        .await;
    env.add_blueprint("shell", SHELL_WASM, &shell.to_string(), &[USE_HOST_POOL])
        .await;
    (env, root)
}

/// The shell resources once `ready` says they are.
async fn shells(store: &Arc<dyn Store>, ready: impl Fn(&[Resource]) -> bool) -> Vec<Resource> {
    wait_for("the shell resources", || async {
        let resources = store.resource_list(None).await.unwrap();
        let shells: Vec<Resource> = resources
            .into_iter()
            .filter(|r| r.resource_type == "shell")
            .collect();
        ready(&shells).then_some(shells)
    })
    .await
}

fn ran(shell: &Resource) -> bool {
    shell.attributes.contains_key("exit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execs_wait_in_their_own_pool_not_on_update_workers() {
    // Each exec is pid 2 in a PID namespace of its own: `$$` would name them all alike.
    let started = "mktemp started-XXXXXX; sleep 60";
    let (env, root) = env_with(json!({"argv": ["sh", "-c", started]})).await;
    let store = env.store().await;
    let _daemon = env.serve(&["--workers", "2", "--exec-slots", "8"]);
    env.request("shell", &["--count", "4"]).await;
    wait_for("four execs running", || async {
        let started = std::fs::read_dir(&root)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("started-")
                })
                .count()
            })
            .unwrap_or(0);
        (started == 4).then_some(())
    })
    .await;
    let healthy = env.request_one("host", &[]).await;
    wait_lease(&store, healthy, LeaseStatus::Active).await;
    let running = shells(&store, |_| true).await;
    assert!(
        running
            .iter()
            .all(|s| !ran(s) && s.status == ResourceStatus::Pending),
        "the host lease went active while all four execs still held their claims: {running:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowing_blueprint_runs_on_a_granted_host_without_a_grant() {
    let (env, root) =
        env_with(json!({"argv": ["sh", "-c", "pwd; echo made > made"], "subdir": "wc"})).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("shell", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let shell = shells(&store, |s| s.iter().any(ran)).await.remove(0);
    assert_eq!(shell.attributes["exit"], "0");
    assert_eq!(shell.attributes["stdout"].trim(), root.to_str().unwrap());
    assert!(root.join("made").exists());
    let pwd = env
        .ok(&["exec", "--lease", &lease.to_string(), "--", "pwd"])
        .await;
    assert_eq!(
        pwd.trim(),
        root.join("wc").to_str().unwrap(),
        "its interface narrows the host's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_is_capped_while_it_is_read() {
    let bomb = "head -c 300000000 /dev/zero | tr '\\0' x";
    let (env, _root) = env_with(json!({"argv": ["sh", "-c", bomb]})).await;
    let store = env.store().await;
    let daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    let shell = shells(&store, |s| s.iter().any(ran)).await.remove(0);
    assert_eq!(shell.attributes["exit"], "0");
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    assert!(
        peak_kib < 256 * 1024,
        "300 MB of output took the daemon to {peak_kib} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_directory_cannot_lead_out_of_the_root() {
    let (env, root) = env_with(json!({"argv": ["cat", "passwd"], "cwd": "out"})).await;
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    let shell = shells(&store, |s| s.iter().any(ran)).await.remove(0);
    assert_eq!(shell.attributes["exit"], "none");
    let refusal = format!(
        "{:?} is a symbolic link; refusing to follow it beneath the grant {root:?}",
        root.join("out")
    );
    assert_eq!(shell.attributes["stderr"], refusal);
    assert!(
        !shell.attributes["stdout"].contains("root:"),
        "it read /etc/passwd"
    );
}

/// Each `NAME=VALUE` line of `env`'s output, by name.
fn variables(env_output: &str) -> BTreeMap<String, String> {
    env_output
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The whole environment an exec through `lease` (on `resource`) in `home` is documented to get.
fn documented(home: &Path, lease: &str, resource: &str) -> BTreeMap<String, String> {
    [
        ("DRYDOCK_LEASE", lease),
        ("DRYDOCK_RESOURCE", resource),
        ("HOME", home.to_str().unwrap()),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("PWD", home.to_str().unwrap()),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_sees_its_documented_environment_and_none_of_the_daemons() {
    let (env, root) = env_with(json!({"argv": ["env"]})).await;
    let store = env.store().await;
    let secrets = [
        ("DRYDOCK_SECRET_PROBE", "leak"),
        ("AWS_SECRET_ACCESS_KEY", "leak"),
    ];
    let _daemon = env.serve_with_env(&[], &secrets);
    let lease = env.request_one("shell", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let shell = shells(&store, |s| s.iter().any(ran)).await.remove(0);
    assert_eq!(shell.attributes["exit"], "0", "{:?}", shell.attributes);
    let host_lease = store
        .lease_list_supporting(shell.id)
        .await
        .unwrap()
        .remove(0);
    let host = host_lease.resource_id.unwrap().to_string();
    assert_eq!(
        variables(&shell.attributes["stdout"]),
        documented(&root, &host_lease.id.to_string(), &host),
        "the daemon's own variables (its database URL, token, the probes) stay out"
    );

    let out = env
        .ok(&["exec", "--lease", &lease.to_string(), "--", "env"])
        .await;
    assert_eq!(
        variables(&out),
        documented(&root, &lease.to_string(), &shell.id.to_string()),
        "nor does `drydock exec` pass on its caller's (no TERM without a terminal)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_root_replaced_by_a_link_is_refused_and_other_hosts_keep_working() {
    let env = Env::new();
    let hosts = env.dir().join("hosts");
    let (host_1, host_2) = (hosts.join("host-1"), hosts.join("host-2"));
    let pool = json!({"hosts": [
        {"name": "host-1", "interface": {"type": "local", "root": host_1}},
        {"name": "host-2", "interface": {"type": "local", "root": host_2}},
    ]});
    let grant = format!("local:{}", hosts.display());
    env.add_blueprint("host-pool", HOST_POOL_WASM, &pool.to_string(), &[&grant])
        .await;
    let shell = json!({"argv": ["pwd"], "subdir": "etc"});
    env.add_blueprint("shell", SHELL_WASM, &shell.to_string(), &[USE_HOST_POOL])
        .await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("shell", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let shell = shells(&store, |s| s.iter().any(ran)).await.remove(0);
    assert_eq!(shell.attributes["stdout"].trim(), host_1.to_str().unwrap());

    // What an exec through the host lease could do: replace the host's root with a link to /.
    std::fs::remove_dir_all(&host_1).unwrap();
    std::os::unix::fs::symlink("/", &host_1).unwrap();
    let refusal =
        format!("{host_1:?} is a symbolic link; refusing to follow it beneath the grant {hosts:?}");
    let host_lease = store
        .lease_list_supporting(shell.id)
        .await
        .unwrap()
        .remove(0);
    for through in [lease, host_lease.id] {
        let out = env
            .drydock(&["exec", "--lease", &through.to_string(), "--", "pwd", "-P"])
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{through} ran through the link");
        assert!(stderr.contains(&refusal), "{through}: {stderr}");
        assert!(out.stdout.is_empty(), "{through}: {:?}", out.stdout);
    }

    let healthy = env.request_one("host", &["--attr", "host=host-2"]).await;
    wait_lease(&store, healthy, LeaseStatus::Active).await;
    let pwd = env
        .ok(&["exec", "--lease", &healthy.to_string(), "--", "pwd", "-P"])
        .await;
    assert_eq!(pwd.trim(), host_2.to_str().unwrap());
}
