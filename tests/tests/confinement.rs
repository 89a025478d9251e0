//! Confined execs end to end (`exec::confine`), with hostile commands run by the `shell`
//! blueprint on a host-pool host and by `drydock exec`: nothing they start outlives them (a
//! `setsid`, a double fork) after a timeout, a graceful stop or a daemon killed with SIGKILL;
//! they cannot write outside their root nor read the daemon's database or token file; and where
//! the machine cannot confine them (here: bubblewrap missing) they are refused, saying why,
//! unless the daemon runs with `--unconfined-exec`, which the web UI shows as a warning. And a
//! blueprint the operator did not authorize cannot borrow host-pool's hosts at all.

use drydock_host::domain::LeaseStatus;
use drydock_host::store::{Resource, Store};
use drydock_tests::{Env, MISBEHAVE_WASM, SHELL_WASM, TOKEN, USE_HOST_POOL, wait_for, wait_lease};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A database with host-pool on a host rooted in the test's directory (granted with
/// `options`), and the shell blueprint running `shell` (its config).
async fn env_with(shell: serde_json::Value, options: &str) -> (Env, PathBuf) {
    let env = Env::new();
    let root = host_and_shell(&env, shell, options).await;
    (env, root)
}

/// Registers host-pool with a host rooted at `host` in the test's directory (granted with
/// `options`) and the shell blueprint running `shell`; the host's root.
async fn host_and_shell(env: &Env, shell: serde_json::Value, options: &str) -> PathBuf {
    let root = host_pool(env, options).await;
    env.add_blueprint("shell", SHELL_WASM, &shell.to_string(), &[USE_HOST_POOL])
        .await;
    root
}

/// Registers host-pool with a host rooted at `host` in the test's directory, granted with
/// `options`; the host's root.
async fn host_pool(env: &Env, options: &str) -> PathBuf {
    let root = env.dir().join("host");
    let hosts =
        json!({"hosts": [{"name": "local-1", "interface": {"type": "local", "root": root}}]});
    let grant = format!("local:{}{options}", root.display());
    let pool = hosts.to_string();
    env.add_blueprint("host-pool", drydock_tests::HOST_POOL_WASM, &pool, &[&grant])
        .await;
    root
}

/// The shell resource once its command has run.
async fn ran(store: &Arc<dyn Store>) -> Resource {
    wait_for("the shell's command to end", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources
            .into_iter()
            .find(|r| r.resource_type == "shell" && r.attributes.contains_key("exit"))
    })
    .await
}

/// A command that leaves two processes behind whatever happens to it: `sleep MARKER` in a
/// session of its own, and `sleep MARKER+1` double-forked into one, then sleeps `seconds`.
fn escapes(marker: u32, seconds: u32) -> serde_json::Value {
    let script = format!(
        "setsid sleep {marker} & (setsid sh -c 'sleep {} &' &); sleep {seconds}",
        marker + 1
    );
    json!({"argv": ["sh", "-c", script], "timeout_ms": 2_000})
}

/// The processes on this machine running `sleep MARKER`.
fn sleeping(marker: u32) -> Vec<String> {
    let wanted = format!("sleep\0{marker}\0");
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs
        .filter(|p| std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .map(|p| p.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits until both escapes of `marker` run.
async fn escaped(marker: u32) {
    wait_for(
        &format!("sleep {marker} and {} to run", marker + 1),
        || async {
            (!sleeping(marker).is_empty() && !sleeping(marker + 1).is_empty()).then_some(())
        },
    )
    .await;
}

/// Fails unless both escapes of `marker` are gone within a few seconds (a kill is delivered
/// asynchronously).
async fn none_left(marker: u32, after: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = [marker, marker + 1]
            .into_iter()
            .flat_map(sleeping)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes {left:?} of the exec outlived {after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_and_a_double_fork_die_at_the_execs_timeout() {
    let marker = 86_310;
    let (env, _root) = env_with(escapes(marker, 60), "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    escaped(marker).await;
    let shell = ran(&store).await;
    assert!(
        shell.attributes["stderr"].contains("timed out after 2s"),
        "{:?}",
        shell.attributes
    );
    none_left(marker, "the exec's timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_and_a_double_fork_die_when_the_daemon_stops() {
    let marker = 86_320;
    let mut shell = escapes(marker, 60);
    shell["timeout_ms"] = json!(600_000);
    let (env, _root) = env_with(shell, "").await;
    let daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    escaped(marker).await;
    assert!(daemon.terminate().await, "the daemon stopped gracefully");
    none_left(marker, "the daemon's graceful stop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_and_a_double_fork_die_with_a_daemon_killed_by_sigkill() {
    let marker = 86_330;
    let mut shell = escapes(marker, 60);
    shell["timeout_ms"] = json!(600_000);
    let (env, _root) = env_with(shell, "").await;
    let mut daemon = env.serve(&[]);
    env.request("shell", &[]).await;
    escaped(marker).await;
    daemon.kill9().await;
    none_left(marker, "the daemon killed with SIGKILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_drydock_exec_starts_dies_with_it() {
    let marker = 86_340;
    let (env, _root) = env_with(json!({"argv": ["true"]}), "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("host", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let script = format!(
        "setsid sleep {marker} & (setsid sh -c 'sleep {} &' &); sleep 0.5; echo started",
        marker + 1
    );
    let out = env
        .ok(&[
            "exec",
            "--lease",
            &lease.to_string(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .await;
    assert_eq!(out.trim(), "started");
    none_left(marker, "`drydock exec`").await;
}

/// What a hostile exec tries: read the database and the token file, list the database's
/// directory, write beside its root and into the system; and what it may do: write its root.
fn hostile(env: &Env, token_file: &Path) -> String {
    let dir = env.dir().display();
    format!(
        "echo mine > mine; head -c 15 {dir}/drydock.db; cat {token}; ls {dir}; \
         for f in {dir}/escaped /usr/escaped /etc/escaped /escaped; do echo x > $f; done; \
         echo finished",
        token = token_file.display()
    )
}

/// Checks what the hostile command of [`hostile`] printed and left.
fn contained(env: &Env, root: &Path, stdout: &str, who: &str) {
    assert!(stdout.contains("finished"), "{who}: {stdout}");
    assert!(
        !stdout.contains("SQLite format"),
        "{who} read the database: {stdout}"
    );
    assert!(!stdout.contains(TOKEN), "{who} read the token: {stdout}");
    assert_eq!(
        std::fs::read_to_string(root.join("mine")).unwrap(),
        "mine\n",
        "{who} could not write its root"
    );
    for outside in [
        env.dir().join("escaped"),
        "/usr/escaped".into(),
        "/etc/escaped".into(),
    ] {
        assert!(!outside.exists(), "{who} wrote {}", outside.display());
    }
}

/// Runs the hostile command through the shell blueprint and `drydock exec` on a host granted
/// with `options` (given the test's directory, which holds the database and the token file),
/// under a daemon with that token file.
async fn hostile_run(options: impl Fn(&Path) -> String) {
    let env = Env::new();
    let token_file = env.dir().join("tokens");
    std::fs::write(&token_file, format!("operator {TOKEN}\n")).unwrap();
    let script = hostile(&env, &token_file);
    let shell = json!({"argv": ["sh", "-c", &script]});
    let root = host_and_shell(&env, shell, &options(env.dir())).await;
    let store = env.store().await;
    let _daemon = env.serve(&["--token-file", token_file.to_str().unwrap()]);
    let lease = env.request_one("shell", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let resource = ran(&store).await;
    contained(
        &env,
        &root,
        &resource.attributes["stdout"],
        "the blueprint's exec",
    );

    // `drydock exec` knows the database, not the daemon's token file: it is told.
    std::fs::remove_file(root.join("mine")).unwrap();
    let hide = token_file.to_str().unwrap();
    let lease = lease.to_string();
    let exec = [
        "exec", "--hide", hide, "--lease", &lease, "--", "sh", "-c", &script,
    ];
    let out = env.drydock(&exec).await;
    contained(
        &env,
        &root,
        &String::from_utf8_lossy(&out.stdout),
        "drydock exec",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_cannot_write_outside_its_root_nor_read_the_database_or_token() {
    hostile_run(|_| String::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_shows_the_daemons_directory_still_hides_its_database_and_token() {
    hostile_run(|dir| format!(",ro={}", dir.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bubblewrap_local_execs_are_refused_unless_the_daemon_runs_them_unconfined() {
    let shell = json!({"argv": ["sh", "-c", "echo ran > ran"]});
    let (env, root) = env_with(shell.clone(), "").await;
    let store = env.store().await;
    let missing = env.dir().join("no-such-bwrap");
    let missing = missing.to_str().unwrap();
    let daemon = env.serve_with_env(&[], &[("DRYDOCK_BWRAP", missing)]);
    env.request("shell", &[]).await;
    let refused = ran(&store).await;
    let why = format!("local execs are refused: bubblewrap {missing} does not exist");
    assert_eq!(
        refused.attributes["exit"], "none",
        "{:?}",
        refused.attributes
    );
    assert!(
        refused.attributes["stderr"].starts_with(&why)
            && refused.attributes["stderr"].contains("--unconfined-exec"),
        "{:?}",
        refused.attributes
    );
    assert!(!root.join("ran").exists(), "the refused command ran");
    let warned = format!("drydock: WARNING: {why}");
    assert!(
        daemon.log_lines().contains(&warned),
        "{:?}",
        daemon.log_lines()
    );

    let host = env.request_one("host", &[]).await;
    wait_lease(&store, host, LeaseStatus::Active).await;
    let host = host.to_string();
    let out = env
        .drydock(&[
            "exec", "--bwrap", missing, "--lease", &host, "--", "touch", "ran",
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&why),
        "{out:?}"
    );
    assert!(
        !root.join("ran").exists(),
        "`drydock exec` ran it all the same"
    );
    let unconfined = [
        "exec",
        "--bwrap",
        missing,
        "--unconfined-exec",
        "--lease",
        &host,
    ];
    env.ok(&[&unconfined[..], &["--", "touch", "ran"]].concat())
        .await;
    assert!(root.join("ran").exists(), "--unconfined-exec runs it");
    assert!(daemon.terminate().await);

    // A daemon told to run them unconfined does, and every page of its UI says so.
    let (env, root) = env_with(shell, "").await;
    let store = env.store().await;
    let mut daemon = env.serve_with_env(&["--unconfined-exec"], &[("DRYDOCK_BWRAP", missing)]);
    env.request("shell", &[]).await;
    assert_eq!(ran(&store).await.attributes["exit"], "0");
    assert!(root.join("ran").exists());
    let page = reqwest::get(format!("{}/", daemon.url().await))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"id="exec-warning""#) && page.contains("local execs run UNCONFINED"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_store_the_grants_the_confinement_and_ssh() {
    let (env, root) = env_with(json!({"argv": ["true"]}), ",ro=/no/such/mirror").await;
    let out = env.drydock(&["doctor"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    let grant = format!("local:{},ro=/no/such/mirror", root.display());
    for line in [
        format!("OK    store: {} opened read-only; 2 blueprints", env.url),
        format!(
            "WARN  grants of host-pool: {grant}: {}, /no/such/mirror does not exist",
            root.display()
        ),
        "OK    grants of shell: use:host-pool".into(),
        "OK    confinement: local execs are confined by bubblewrap".into(),
        "OK    caps: a cgroup per exec".into(),
        "OK    ssh: /usr/bin/ssh".into(),
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(&line)),
            "{line}:\n{report}"
        );
    }

    let missing = env.dir().join("no-such-bwrap");
    let missing = missing.to_str().unwrap();
    let out = env.drydock(&["doctor", "--bwrap", missing]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let refused = format!(
        "FAIL  confinement: local execs are refused: bubblewrap {missing} does not exist; the \
         daemon refuses local execs unless started with --unconfined-exec"
    );
    assert!(report.lines().any(|l| l == refused), "{report}");

    let elsewhere = Env::new();
    let out = elsewhere.drydock(&["doctor"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.starts_with("FAIL  store: "), "{report}");
}

/// Whether `end` names a missing authorization.
fn unauthorized(end: Option<&drydock_host::store::End>) -> bool {
    end.and_then(|end| end.detail.as_deref())
        .is_some_and(|why| why.contains("not authorized"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supporting_lease_needs_an_authorization_that_the_refusal_names() {
    let env = Env::new();
    host_pool(&env, "").await;
    // The attacker: granted nothing, it asks host-pool for a host to run commands on.
    let shell = json!({"argv": ["cat", "/etc/passwd"]}).to_string();
    env.add_blueprint("shell", SHELL_WASM, &shell, &["local:/nonexistent"])
        .await;
    let store = env.store().await;
    let mut daemon = env.serve(&[]);
    let api = daemon.url().await;
    env.request("shell", &[]).await;

    // shell asks for its host while allocating: the refusal ends the lease it allocates for.
    let broken = wait_for("the shell lease to break, unauthorized", || async {
        let leases = store.lease_list(None).await.unwrap();
        leases.into_iter().find(|l| unauthorized(l.end.as_ref()))
    })
    .await;
    let why = "shell is not authorized to hold \"host\" leases on host-pool: an operator allows \
               it with `drydock blueprint authorize shell --use host-pool`";
    let shown = env.ok(&["lease", "show", &broken.id.to_string()]).await;
    assert!(shown.contains(why), "{shown}");
    // The operator's decision, not a fault of the blueprint's.
    assert!(!shown.contains("invalid step"), "{shown}");
    let answer = reqwest::Client::new()
        .get(format!("{api}/api/v1/leases/{}", broken.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains(&why.replace('"', "\\\"")), "{answer}");
    let hosts = store.resource_list(None).await.unwrap();
    assert!(
        hosts.iter().all(|r| r.resource_type != "host"),
        "host-pool made a host for an unauthorized blueprint: {hosts:?}"
    );
    // A name that is no blueprint is refused; the right one lets the lease through.
    let wrong = env
        .drydock(&["blueprint", "authorize", "shell", "--use", "host-poll"])
        .await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success()
            && stderr.contains(
                "use:host-poll names no registered blueprint: add \"host-poll\" first \
                 (`drydock blueprint list` shows those there are)"
            ),
        "{stderr}"
    );
    let authorized = env
        .ok(&["blueprint", "authorize", "shell", "--use", "host-pool"])
        .await;
    assert!(authorized.contains("use:host-pool"), "{authorized}");
    // A new lease, served once the blueprint's back-off after that failure ends.
    env.request("shell", &[]).await;
    let ran = ran(&store).await;
    assert_eq!(ran.attributes["exit"], "0", "{:?}", ran.attributes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supporting_lease_requested_while_activating_breaks_the_unauthorized_resource() {
    let env = Env::new();
    host_pool(&env, "").await;
    let config = r#"{"mode": "borrow-on-activation"}"#;
    env.add_blueprint("misbehave", MISBEHAVE_WASM, config, &[])
        .await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    env.request("trouble", &[]).await;
    let broken = wait_for("the resource to break, unauthorized", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources.into_iter().find(|r| unauthorized(r.end.as_ref()))
    })
    .await;
    let why = "misbehave is not authorized to hold \"host\" leases on host-pool: an operator \
               allows it with `drydock blueprint authorize misbehave --use host-pool`";
    let shown = env.ok(&["resource", "show", &broken.id.to_string()]).await;
    assert!(shown.contains(why), "{shown}");
    let resources = store.resource_list(None).await.unwrap();
    assert!(
        resources.iter().all(|r| r.resource_type != "host"),
        "host-pool made a host for an unauthorized resource: {resources:?}"
    );

    // Authorized, the next resource activates and holds its host.
    env.ok(&["blueprint", "authorize", "misbehave", "--use", "host-pool"])
        .await;
    let lease = env.request_one("trouble", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    wait_for("a host for the authorized resource", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources.into_iter().find(|r| r.resource_type == "host")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_runs_execs_as_its_unprivileged_user_with_its_variables() {
    let nobody = drydock_host::exec::RunAs::resolve("nobody").expect("a nobody user");
    let script = "id -u; awk '/^Uid:/ {print $2}' /proc/self/status; \
                  echo \"$TOOLS|$PATH\"; echo made > made";
    let shell = json!({"argv": ["sh", "-c", script]});
    let options = ",user=nobody,env=TOOLS=/opt/tools,env=PATH=/opt/tools/bin:/usr/bin:/bin";
    let env = Env::new();
    let root = env.dir().join("host");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(nobody.uid), Some(nobody.gid)).unwrap();
    host_and_shell(&env, shell, options).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("shell", &[]).await;
    let resource = ran(&store).await;
    let expected = format!(
        "{0}\n{0}\n/opt/tools|/opt/tools/bin:/usr/bin:/bin\n",
        nobody.uid
    );
    assert_eq!(
        resource.attributes["stdout"], expected,
        "the blueprint's exec"
    );
    let made = std::fs::metadata(root.join("made")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), nobody.uid);

    // `drydock exec` through the same lease runs as the same user, with the same variables.
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let lease = lease.to_string();
    let out = env
        .ok(&["exec", "--lease", &lease, "--", "sh", "-c", script])
        .await;
    assert_eq!(out, expected, "drydock exec");
    // A user the machine does not have is named when an exec would run as it.
    let missing = format!("local:{},user=no-such-user-here", root.display());
    env.ok(&["blueprint", "grant", "host-pool", &missing]).await;
    let out = env
        .drydock(&["exec", "--lease", &lease, "--", "true"])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("\"no-such-user-here\", which this machine does not have"),
        "{stderr}"
    );
}

/// A bash line that connects to `port` on the loopback and says so.
fn connects(port: u16) -> String {
    format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected; true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execs_reach_no_service_on_the_machines_loopback_unless_granted_net_host() {
    // Stands for any local service: a PostgreSQL with trust auth, a cloud's metadata proxy.
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let shell = json!({"argv": ["bash", "-c", connects(port)]});
    let (env, root) = env_with(shell, "").await;
    let store = env.store().await;
    // Public reads: the blueprint's page is read below without signing in.
    let mut daemon = env.serve(&["--public-reads"]);
    let lease = env.request_one("shell", &[]).await;
    let resource = ran(&store).await;
    assert!(
        !resource.attributes["stdout"].contains("connected"),
        "the blueprint's exec reached the service: {:?}",
        resource.attributes
    );

    // `drydock exec`, to the daemon's own API too; also through user-mode networking, which
    // reaches the outside but nothing of the machine.
    let url = daemon.url().await;
    let api: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let lease = lease.to_string();
    for network in ["none", "outbound"] {
        let grant = format!("local:{},net={network}", root.display());
        env.ok(&["blueprint", "grant", "host-pool", &grant]).await;
        for port in [port, api] {
            let line = connects(port);
            let out = env
                .ok(&["exec", "--lease", &lease, "--", "bash", "-c", &line])
                .await;
            assert!(
                !out.contains("connected"),
                "drydock exec with net={network} reached port {port}"
            );
        }
    }

    // With the machine's network, granted and warned about.
    let grant = format!("local:{},net=host", root.display());
    env.ok(&["blueprint", "grant", "host-pool", &grant]).await;
    let line = connects(api);
    let out = env
        .ok(&["exec", "--lease", &lease, "--", "bash", "-c", &line])
        .await;
    assert_eq!(out, "connected\n", "net=host reaches the daemon's API");
    let doctor = env.drydock(&["doctor"]).await;
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("share the machine's network (net=host)"),
        "{report}"
    );
    let page = reqwest::get(format!("{url}/blueprints/B1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Warning: ") && page.contains("share the machine's network (net=host)"),
        "the blueprint's page warns: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_inherits_no_descriptor_the_daemon_was_started_with() {
    let listing = json!({"argv": ["sh", "-c", "ls /proc/$$/fd; true"]});
    let (env, _root) = env_with(listing, "").await;
    // A directory the launcher left open and inheritable: every drydock process started from
    // now on holds it, at the same number.
    let stray = std::fs::File::open(env.dir()).unwrap();
    rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stray);
    let store = env.store().await;
    let daemon = env.serve(&[]);
    let fdinfo = format!("/proc/{}/fdinfo/{fd}", daemon.pid());
    wait_for(
        "the daemon to mark its inherited descriptor close-on-exec",
        || async {
            let info = std::fs::read_to_string(&fdinfo).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            let flags = u32::from_str_radix(flags.trim(), 8).ok()?;
            (flags & 0o2_000_000 != 0).then_some(())
        },
    )
    .await;
    let lease = env.request_one("shell", &[]).await;
    let resource = ran(&store).await;
    assert_eq!(
        resource.attributes["stdout"], "0\n1\n2\n",
        "the blueprint's exec"
    );
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let lease = lease.to_string();
    let script = "ls /proc/$$/fd; true";
    let out = env
        .ok(&["exec", "--lease", &lease, "--", "sh", "-c", script])
        .await;
    assert_eq!(out, "0\n1\n2\n", "drydock exec");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drydock_exec_at_a_terminal_types_nothing_into_the_callers() {
    use rustix::pty::OpenptFlags;
    let (env, _root) = env_with(json!({"argv": ["true"]}), "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("host", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;

    // The operator's terminal: a pseudo-terminal whose other side the test holds.
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let caller = rustix::pty::ioctl_tiocgptpeer(&master, flags).unwrap();
    // The command pushes a line into its terminal's input, then says which terminal controls it
    // (the device number in /proc/self/stat).
    let inject = "import fcntl, termios\n\
                  for c in 'echo typed-by-the-exec\\n': fcntl.ioctl(0, termios.TIOCSTI, c.encode())\n\
                  print('tty', open('/proc/self/stat').read().rsplit(')', 1)[1].split()[4])\n";
    let lease = lease.to_string();
    let mut command = env.command(&["exec", "--lease", &lease, "--", "python3", "-c", inject]);
    command
        .stdin(std::fs::File::from(caller.try_clone().unwrap()))
        .stdout(std::fs::File::from(caller.try_clone().unwrap()))
        .stderr(std::fs::File::from(caller.try_clone().unwrap()));
    // SAFETY: `setsid` and `ioctl` are async-signal-safe; stdin is the terminal by then.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::os::fd::BorrowedFd::borrow_raw(0))?;
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // Only the child holds the caller's side now (and the test, `caller`).
    drop(command);
    let screen = std::thread::spawn({
        let mut master = std::fs::File::from(master.try_clone().unwrap());
        move || {
            let mut shown = Vec::new();
            let _ = std::io::Read::read_to_end(&mut master, &mut shown);
            String::from_utf8_lossy(&shown).into_owned()
        }
    });
    let status = child.wait().await.unwrap();

    // Whatever the command typed would wait in the caller's input for its shell to read.
    let mut termios = rustix::termios::tcgetattr(&caller).unwrap();
    termios.make_raw();
    rustix::termios::tcsetattr(&caller, rustix::termios::OptionalActions::Now, &termios).unwrap();
    let waiting = rustix::io::ioctl_fionread(&caller).unwrap();
    let device = rustix::fs::fstat(&caller).unwrap().st_rdev;
    let (major, minor) = (rustix::fs::major(device), rustix::fs::minor(device));
    let callers_tty = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
    drop(caller);
    let shown = screen.join().unwrap();
    assert!(status.success(), "{shown}");
    assert_eq!(
        waiting, 0,
        "the exec typed into the caller's terminal: {shown}"
    );
    let tty = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("tty "))
        .unwrap_or_else(|| panic!("no terminal reported: {shown}"));
    assert_ne!(tty, "0", "the command has a terminal of its own: {shown}");
    assert_ne!(
        tty,
        callers_tty.to_string(),
        "the caller's terminal controls the command"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_path_inside_a_writable_grant_is_refused_when_granted() {
    let (env, root) = env_with(json!({"argv": ["true"]}), "").await;
    let inside = root.join("mirror");
    let grant = format!(
        "local:{}/other,ro={}",
        env.dir().display(),
        inside.display()
    );
    let out = env.drydock(&["blueprint", "grant", "shell", &grant]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("ro={}", inside.display())) && stderr.contains("makes writable"),
        "{stderr}"
    );
    // Nor is a writable directory granted around a path already read-only elsewhere.
    let mirror = env.dir().join("mirror");
    let reader = format!(
        "local:{}/reader,ro={}",
        env.dir().display(),
        mirror.display()
    );
    env.ok(&["blueprint", "grant", "shell", &reader]).await;
    let around = format!("local:{}", env.dir().display());
    let out = env
        .drydock(&["blueprint", "grant", "host-pool", &around])
        .await;
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_exits_127_saying_so() {
    let shell = json!({"argv": ["no-such-command-here", "--flag"]});
    let (env, _root) = env_with(shell, "").await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("shell", &[]).await;
    let resource = ran(&store).await;
    assert_eq!(
        resource.attributes["exit"], "127",
        "{:?}",
        resource.attributes
    );
    assert!(resource.attributes["stderr"].contains("no-such-command-here: command not found"));

    wait_lease(&store, lease, LeaseStatus::Active).await;
    let lease = lease.to_string();
    let out = env
        .drydock(&["exec", "--lease", &lease, "--", "no-such-command-here"])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("no-such-command-here: command not found"),
        "{stderr}"
    );
}
