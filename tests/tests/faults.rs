//! The queue stays live under real faults: a full disk (also under group commits), a daemon
//! killed (kill -9) or stopped (SIGSTOP) in the middle of an exec, a store stalled by another
//! process holding SQLite's write lock during an exec, many processes opening a new database at
//! once, runs that keep failing, long allocation passes, and leases waiting for capacity. Each case is named in
//! the invariants table of `docs/ARCHITECTURE.md`.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::CommandFilter;
use drydock_tests::counting::{active_leases, each_released_once};
use drydock_tests::shell_run::ShellRun;
use drydock_tests::{COUNTING_WASM, Env, HOST_POOL_CONFIG, HOST_POOL_WASM, wait_for, wait_lease};
use std::path::{Path, PathBuf};
use std::process::Stdio;

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

/// How many leases are destroyed, read on a connection of the test's own.
fn destroyed(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM lease WHERE status = 'destroyed'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

/// The disk fills and empties again and again while 100 releases are applied, 64 plans to a
/// transaction, on a daemon that gives up after two failed runs. Each time, the write-ahead log
/// is emptied first, so that the COMMITs made while the disk is full need new room and fail.
/// Failed group commits are the store's trouble, not the leases': every release ends as a
/// release, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_end_as_releases_while_the_disk_keeps_filling_under_group_commits() {
    let base = Env::new();
    let disk = Tmpfs::mount(&base.dir().join("disk"), "32m");
    let env = Env::at(&disk.0.join("drydock.db"));
    // Each release spins 50 ms in its hook, so that releases are being committed for seconds.
    let config = r#"{"max_resources": 4, "release_delay_ms": 50}"#;
    env.add_blueprint("counting", COUNTING_WASM, config, &[])
        .await;
    let _daemon = env.serve(&["--group-commit", "64", "--max-attempts", "2"]);
    let leases = active_leases(&env, 100).await;
    env.ok(&["lease", "release", "--all"]).await;

    let other = drydock_tests::sqlite(&env.url);
    other
        .busy_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    let filler = disk.0.join("filler");
    let deadline = tokio::time::Instant::now() + drydock_tests::PATIENCE;
    let mut fills = 0;
    while destroyed(&other) < leases.len() as i64 && tokio::time::Instant::now() < deadline {
        fills += 1;
        other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        fill(&filler);
        // Full for 0.3 s, then room for a second.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        std::fs::remove_file(&filler).unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(fills > 3, "the releases were over before the disk filled");
    let store = env.store().await;
    for &lease in &leases {
        wait_lease(&store, lease, LeaseStatus::Destroyed).await;
    }
    each_released_once(&store, &leases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_dies_with_its_killed_daemon_before_another_runs_it() {
    let mut run = ShellRun::start(Env::new(), "3s", 8).await;
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
    let run = ShellRun::start(Env::new(), "3s", 8).await;
    run.stop_first_between_writes().await;
    let _second = run.second();
    run.wait_runs("start", 2).await;
    run.first.signal("CONT");
    let runs = run.finished_without_overlap().await;
    assert_eq!(runs.iter().filter(|l| *l == "end").count(), 1, "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_processes_may_open_a_new_database_at_once() {
    let env = Env::new();
    // The commands that may create one: migrations, and a few blueprints added.
    let opens: Vec<_> = (0..20)
        .map(|n| match n % 4 {
            0 => {
                let name = format!("pool-{n}");
                let mut add = env.blueprint_add(&name, HOST_POOL_WASM, HOST_POOL_CONFIG, &[]);
                add.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            }
            _ => env.start(&["migrate"]),
        })
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
    drydock_tests::sqlite(&env.url)
        .execute_batch("UPDATE component SET wasm = x'0061736d0d000100'")
        .unwrap();
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
    // Broken, it keeps failing on its way out: it gives up again, and keeps a wake-up backed
    // off all the same, never left without one.
    wait_for("a second give-up", || async {
        let logs = store.log_list(Some(lease), 0, 1000).await.unwrap();
        (logs.iter().filter(|l| l.kind == "lease.gave-up").count() >= 2).then_some(())
    })
    .await;
    let work = store.work_item_get(lease).await.unwrap();
    assert!(
        work.owner.is_none() && work.wake_at.is_some_and(|at| at > store.now()),
        "a lease that gave up while broken keeps a later wake-up: {work:?}"
    );
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

/// Another process holds SQLite's write lock for `stall` while a ten-second exec runs under a
/// 9 s claim. The daemon is alive, only its store stalls, and nobody else can take the claim:
/// the exec is paused at most, never killed, and the blueprint sees its real result.
async fn a_store_stall_neither_kills_nor_breaks_a_running_exec(stall: std::time::Duration) {
    let run = ShellRun::start(Env::new(), "9s", 10).await;
    let other = drydock_tests::sqlite(&run.env.url);
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The stall itself: how long the other process keeps the lock.
    tokio::time::sleep(stall).await;
    other.execute_batch("COMMIT").unwrap();
    run.ran_once_to_its_end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_second_store_stall_neither_kills_nor_breaks_a_running_exec() {
    a_store_stall_neither_kills_nor_breaks_a_running_exec(std::time::Duration::from_secs(6)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eight_second_store_stall_neither_kills_nor_breaks_a_running_exec() {
    a_store_stall_neither_kills_nor_breaks_a_running_exec(std::time::Duration::from_secs(8)).await;
}
