//! The queue stays live under real faults: a full disk, a daemon killed (kill -9) or stopped
//! (SIGSTOP) in the middle of an exec, many processes opening a new database at once, runs that
//! keep failing, long allocation passes, and leases waiting for capacity. Each case is named in
//! the invariants table of `docs/ARCHITECTURE.md`.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{CommandFilter, ObjectId, Store};
use drydock_tests::{COUNTING_WASM, Env, SHELL_WASM, wait_for, wait_lease};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: the disk-full test needs root (CAP_SYS_ADMIN) to make a \
             small file system"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

/// Writes a file until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file
        .write_all(&chunk)
        .and_then(|_| file.sync_data())
        .is_ok()
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_wedges_the_daemon() {
    let base = Env::new();
    let disk = Tmpfs::mount(&base.dir().join("disk"), "4m");
    let env = Env::at(&disk.0.join("drydock.db"));
    env.add_blueprint("counting", COUNTING_WASM, r#"{"max_resources": 100}"#, &[])
        .await;
    let store = env.store().await;
    let daemon = env.serve(&[]);
    let first = env.request_one("counted", &["--until", "3s"]).await;
    wait_lease(&store, first, LeaseStatus::Active).await;

    fill(&disk.0.join("filler"));
    let out = env
        .drydock(&["lease", "request", "--type", "counted"])
        .await;
    assert!(
        !out.status.success(),
        "a request on a full disk cannot succeed"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("full"), "{stderr}");
    // The deadline passes while the disk is full: the daemon's writes fail meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let during = daemon.log_lines().len();

    std::fs::remove_file(disk.0.join("filler")).unwrap();
    wait_lease(&store, first, LeaseStatus::Destroyed).await;
    let second = env.request_one("counted", &[]).await;
    wait_lease(&store, second, LeaseStatus::Active).await;
    let lines = daemon.log_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("non-zero transaction depth")),
        "a failed transaction left the connection inside it"
    );
    assert!(
        during < 200,
        "{during} log lines in five seconds of a full disk: the daemon spun"
    );
}

/// The shell blueprint running `script` under `flock`: a second copy running at the same time
/// writes `overlap` to the log instead.
fn guarded_script(dir: &Path, seconds: u32) -> serde_json::Value {
    let (lock, log) = (dir.join("lock"), dir.join("runs"));
    let body = format!(
        "echo start >> {log}; sleep {seconds}; echo end >> {log}",
        log = log.display()
    );
    let script = format!(
        "flock -n {} sh -c '{body}' || echo overlap >> {}",
        lock.display(),
        log.display()
    );
    json!({"argv": ["sh", "-c", script]})
}

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A shell lease whose eight-second run (counted in the world) has started under a daemon
/// with a 3 s claim TTL, which the test then takes away.
struct ShellRun {
    env: Env,
    world: PathBuf,
    store: Arc<dyn Store>,
    lease: ObjectId,
    first: drydock_tests::Daemon,
}

impl ShellRun {
    async fn start() -> ShellRun {
        let env = Env::new();
        let world = env.dir().join("world");
        std::fs::create_dir_all(&world).unwrap();
        env.add_host_pool().await;
        let shell = guarded_script(&world, 8);
        env.add_blueprint("shell", SHELL_WASM, &shell.to_string(), &[])
            .await;
        let store = env.store().await;
        let first = env.serve(&["--claim-ttl", "3s"]);
        let lease = env.request_one("shell", &[]).await;
        let run = ShellRun {
            env,
            world,
            store,
            lease,
            first,
        };
        run.wait_runs("start", 1).await;
        run
    }

    /// A second daemon on the same database.
    fn second(&self) -> drydock_tests::Daemon {
        self.env.serve(&["--claim-ttl", "3s"])
    }

    /// Waits until the run log has `count` lines saying `what`.
    async fn wait_runs(&self, what: &str, count: usize) {
        wait_for(&format!("{count} × {what}"), || async {
            (runs(&self.world).iter().filter(|l| *l == what).count() >= count).then_some(())
        })
        .await;
    }

    /// Waits for the lease to be active, then checks that no two runs overlapped; the runs.
    async fn finished_without_overlap(&self) -> Vec<String> {
        wait_lease(&self.store, self.lease, LeaseStatus::Active).await;
        let runs = runs(&self.world);
        assert!(
            !runs.contains(&"overlap".to_string()),
            "two runs at once: {runs:?}"
        );
        runs
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_dies_with_its_killed_daemon_before_another_runs_it() {
    let mut run = ShellRun::start().await;
    run.first.kill9().await;
    let _second = run.second();
    let runs = run.finished_without_overlap().await;
    assert_eq!(
        runs.iter().filter(|l| *l == "start").count(),
        2,
        "the killed daemon's run, then the new one: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_dies_before_a_stopped_daemons_claim_can_expire() {
    let run = ShellRun::start().await;
    run.first.signal("STOP");
    let _second = run.second();
    run.wait_runs("start", 2).await;
    run.first.signal("CONT");
    let runs = run.finished_without_overlap().await;
    assert_eq!(runs.iter().filter(|l| *l == "end").count(), 1, "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_processes_may_open_a_new_database_at_once() {
    let env = Env::new();
    let opens: Vec<_> = (0..20)
        .map(|_| env.start(&["lease", "list", "--json"]))
        .collect();
    for child in opens {
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_set_by_activate_lease_fires() {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, r#"{"lease_ttl_ms": 1500}"#, &[])
        .await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("counted", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    assert!(store.lease_get(lease).await.unwrap().until.is_some());
    wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    let filter = CommandFilter {
        target: Some(lease),
        pending: false,
    };
    let commands = store.command_list(&filter).await.unwrap();
    assert_eq!(commands[0].author, "expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yield_from_acquire_lease_waits_on_that_resource() {
    let env = Env::new();
    let config = r#"{"max_resources": 5, "acquire_yields": 2}"#;
    env.add_blueprint("counting", COUNTING_WASM, config, &[])
        .await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("counted", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    let lease = store.lease_get(lease).await.unwrap();
    assert_eq!(lease.attributes["acquire-tries"], "3");
    let resources = store.resource_list(None).await.unwrap();
    assert_eq!(
        resources.len(),
        1,
        "one lease made one resource: {resources:?}"
    );
    assert_eq!(lease.attributes["acquired-on"], resources[0].id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_pass_longer_than_the_claim_ttl_completes() {
    let env = Env::new();
    let config = r#"{"max_resources": 4, "share": false, "check_delay_ms": 400}"#;
    env.add_blueprint("counting", COUNTING_WASM, config, &[])
        .await;
    let store = env.store().await;
    let _daemon = env.serve(&["--claim-ttl", "1s"]);
    for lease in env.request("counted", &["--count", "4"]).await {
        wait_lease(&store, lease, LeaseStatus::Active).await;
    }
    // The fifth looks at four resources (1.6 s of calls, past the 1 s claim), then waits.
    let fifth = env.request_one("counted", &[]).await;
    wait_for("the fifth lease's pass to complete", || async {
        let logs = store.log_list(Some(fifth), 0, 100).await.unwrap();
        logs.iter()
            .any(|l| l.kind == "lease.waiting-for-resources")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_keeps_failing_breaks_and_its_commands_are_consumed() {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, "{}", &[])
        .await;
    let store = env.store().await;
    let daemon = env.serve(&[]);
    let lease = env.request_one("counted", &[]).await;
    wait_lease(&store, lease, LeaseStatus::Active).await;
    assert!(daemon.terminate().await);
    // The component's bytes go bad: every run that needs the blueprint fails to load it.
    let pool = sqlx::SqlitePool::connect(&env.url).await.unwrap();
    sqlx::query("UPDATE component SET wasm = x'0061736d0d000100'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    env.ok(&["lease", "release", &lease.to_string()]).await;
    let _daemon = env.serve(&["--max-attempts", "3"]);
    let filter = CommandFilter {
        target: Some(lease),
        pending: false,
    };
    let command = wait_for("the release to be consumed", || async {
        let commands = store.command_list(&filter).await.unwrap();
        commands.into_iter().find(|c| c.outcome.is_some())
    })
    .await;
    let outcome = command.outcome.unwrap();
    assert!(
        outcome.starts_with(&format!(
            "ignored: {lease} gave up after 3 failed runs in a row; the last: loading counting"
        )),
        "{outcome}"
    );
    assert_eq!(
        store.lease_get(lease).await.unwrap().status,
        LeaseStatus::Broken
    );
    let logs = store.log_list(Some(lease), 0, 100).await.unwrap();
    assert!(logs.iter().any(|l| l.kind == "lease.gave-up"), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_waiting_for_capacity_are_woken_when_it_appears() {
    let env = Env::new();
    env.add_host_pool().await;
    let store = env.store().await;
    // With a backstop of ten minutes, only the wake-up can bring them to active in time.
    let _daemon = env.serve(&["--capacity-wait", "10m"]);
    let leases = env.request("host", &["--count", "50"]).await;
    for lease in &leases {
        wait_lease(&store, *lease, LeaseStatus::Active).await;
    }
    let resources = store
        .resource_list(Some(ResourceStatus::Active))
        .await
        .unwrap();
    assert_eq!(resources.len(), 1, "one host, shared");
}
