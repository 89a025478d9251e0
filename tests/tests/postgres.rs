//! The PostgreSQL backend against a real server: a throwaway cluster per test (see
//! `drydock_tests::postgres`). The conformance suite, the database's clock, migrations,
//! connections lost mid-transaction, wake-ups across processes, several daemons sharing the
//! work, and a soak of daemons killed, connections cut and the server restarted.

use drydock_host::domain::LeaseStatus;
use drydock_host::scheduler::Load;
use drydock_host::store::postgres::{PgOptions, PgStore, TimeSource};
use drydock_host::store::{
    Claim, Clock, CommandKind, NewLease, ObjectId, Plan, ShiftedClock, Store, SystemClock, Write,
    testing,
};
use drydock_tests::counting::{
    RELEASE_LINE, active_leases, applied, count_kind, count_logs, each_released_once,
    settled_commands, the_cli_wakes_an_idle_daemon,
};
use drydock_tests::postgres::Cluster;
use drydock_tests::shell_run::ShellRun;
use drydock_tests::{COUNTING_WASM, Daemon, Env, wait_for, wait_lease};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(2);

async fn open(url: &str, time: TimeSource) -> Arc<dyn Store> {
    let options = PgOptions {
        time,
        ..PgOptions::default()
    };
    Arc::new(PgStore::open_with(url, options).await.unwrap())
}

/// A store on the database's clock, this host's clock stepped by `skew_ms`.
async fn skewed(url: &str, skew_ms: i64) -> Arc<dyn Store> {
    open(url, TimeSource::Database(ShiftedClock::new(skew_ms))).await
}

async fn one_lease(store: &dyn Store) -> ObjectId {
    let new = NewLease {
        resource_type: "thing".into(),
        owner: "test".into(),
        ..NewLease::default()
    };
    store.lease_insert(&new, 1).await.unwrap()[0].id
}

async fn claim_one(store: &dyn Store, owner: &str) -> Option<Claim> {
    store
        .work_item_claim(owner, 1, TTL, &Load::default())
        .await
        .unwrap()
        .into_iter()
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_passes_the_conformance_suite() {
    let cluster = Cluster::start();
    testing::exercise(|clock| {
        let cluster = &cluster;
        async move { open(&cluster.database().await, TimeSource::Clock(clock)).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_expire_on_the_database_clock_whatever_the_hosts_clocks_say() {
    let cluster = Cluster::start();
    let url = cluster.database().await;
    let (behind, ahead) = (
        skewed(&url, -3_600_000).await,
        skewed(&url, 3_600_000).await,
    );
    let truth = SystemClock.now();
    for store in [&behind, &ahead] {
        let off = store.now() as i64 - truth;
        assert!(
            off.abs() < 5_000,
            "wall time corrected to the database's: off by {off} ms"
        );
    }

    let lease = one_lease(behind.as_ref()).await;
    let held = claim_one(behind.as_ref(), "behind").await.unwrap();
    assert_eq!(held.object, lease);
    assert!(
        claim_one(ahead.as_ref(), "ahead").await.is_none(),
        "a host an hour ahead does not take a live claim"
    );
    behind.work_item_heartbeat(&held, TTL).await.unwrap();

    // The host an hour behind stops renewing: its claim expires on the database's clock.
    let taken = wait_for("the claim to expire", || async {
        claim_one(ahead.as_ref(), "ahead").await
    })
    .await;
    assert_eq!(taken.token, held.token + 1);
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease,
        status: LeaseStatus::Released,
    });
    assert!(matches!(
        behind.apply(&held, &plan, TTL).await,
        Err(drydock_host::store::Error::Fenced { .. })
    ));
}

/// This host's clock is stepped an hour while the store is open: the next claim re-learns the
/// database's time, so what a run writes is not an hour off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_time_follows_the_database_from_the_next_claim_when_the_host_clock_steps() {
    let cluster = Cluster::start();
    let local = ShiftedClock::new(0);
    let store = open(
        &cluster.database().await,
        TimeSource::Database(local.clone()),
    )
    .await;
    one_lease(store.as_ref()).await;
    local.step(3_600_000);
    claim_one(store.as_ref(), "stepped").await.unwrap();
    let off = store.now() as i64 - SystemClock.now();
    assert!(
        off.abs() < 5_000,
        "store time is {off} ms off the database's after a claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let cluster = Cluster::start();
    let url = cluster.database().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("a concurrent open succeeds");
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (applied, versions): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let known = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../host/migrations/postgres"
    ))
    .unwrap()
    .count() as i64;
    assert_eq!(
        (applied, versions),
        (known, known),
        "each migration applied once"
    );

    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let error = PgStore::open(&url).await.unwrap_err().to_string();
    assert!(
        error.contains("99 (from the future)") && error.contains("newer than this drydock"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_starting_together_share_one_installation_secret_and_a_read_makes_none() {
    let cluster = Cluster::start();
    let url = cluster.database().await;
    PgStore::open(&url).await.unwrap(); // the schema, without a secret yet
    let reader = PgStore::open_with(
        &url,
        PgOptions {
            access: drydock_host::store::Access::Read,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(
        reader.installation_secret().await.is_err(),
        "a read-only open cannot make the secret"
    );
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let store = PgStore::open(&url).await.unwrap();
                store.installation_secret().await.unwrap()
            })
        })
        .collect();
    let mut secrets = BTreeSet::new();
    for start in starts {
        secrets.insert(start.await.unwrap());
    }
    assert_eq!(secrets.len(), 1, "one secret for every daemon");
    let again = PgStore::open(&url).await.unwrap();
    assert_eq!(
        Some(&again.installation_secret().await.unwrap()),
        secrets.first(),
        "a restarted daemon finds the same secret"
    );
    assert_eq!(
        Some(&reader.installation_secret().await.unwrap()),
        secrets.first(),
        "a read-only open reads the one there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_transaction_writes_nothing_and_the_retry_succeeds() {
    let cluster = Cluster::start();
    let url = cluster.database().await;
    let store = PgStore::open(&url).await.unwrap();
    let (a, b) = (one_lease(&store).await, one_lease(&store).await);
    let claim = store
        .work_item_claim("w", 2, Duration::from_secs(60), &Load::default())
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.object == a)
        .unwrap();
    let mut plan = Plan::new();
    plan.push(Write::LeaseStatus {
        lease: a,
        status: LeaseStatus::Released,
    })
    .push(Write::SetAttribute {
        object: b.into(),
        key: "touched".into(),
        value: "yes".into(),
    });

    // Another session holds lease b's row: the plan's second write waits for it, after the
    // first was made.
    let mut blocker = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT * FROM lease WHERE id = $1 FOR UPDATE")
        .bind(b.number())
        .execute(&mut blocker)
        .await
        .unwrap();
    let applying = {
        let (store, plan, claim) = (store.clone(), plan.clone(), claim.clone());
        tokio::spawn(async move { store.apply(&claim, &plan, TTL).await })
    };
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    wait_for("the plan to wait on the row lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'drydock' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&watcher)
        .await
        .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    assert!(cluster.terminate_drydock_connections().await >= 1);
    let error = applying.await.unwrap().unwrap_err();
    assert!(
        matches!(error, drydock_host::store::Error::Database(_)),
        "{error:?}"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(
        store.lease_get(a).await.unwrap().status,
        LeaseStatus::Pending,
        "the write made before the connection was lost is gone"
    );

    store.apply(&claim, &plan, TTL).await.expect("the retry");
    assert_eq!(
        store.lease_get(a).await.unwrap().status,
        LeaseStatus::Released
    );
    assert_eq!(
        store.lease_get(b).await.unwrap().attributes.get("touched"),
        Some(&"yes".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_process_wakes_a_listener_even_after_its_connection_is_cut() {
    let cluster = Cluster::start();
    let url = cluster.database().await;
    let (listener, poster) = (
        PgStore::open(&url).await.unwrap(),
        PgStore::open(&url).await.unwrap(),
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    let _listening = listener.listen(wake.clone()).await.unwrap();
    let woken = || async {
        tokio::time::timeout(drydock_tests::PATIENCE, wake.notified())
            .await
            .expect("woken by the other store's post");
    };
    woken().await; // the first connection announces itself
    one_lease(&poster).await;
    woken().await;

    cluster.terminate_drydock_connections().await;
    // Reconnecting wakes once (something may have been posted meanwhile); then posts do.
    woken().await;
    let lease = one_lease(&poster).await;
    woken().await;
    poster
        .command_post(&[lease], CommandKind::Release, "test")
        .await
        .unwrap();
    woken().await;
}

/// A database on a fresh cluster with the counting blueprint registered under `config`.
async fn counting_env(cluster: &Cluster, config: &str) -> Env {
    let env = Env::with_url(cluster.database().await);
    env.add_blueprint("counting", COUNTING_WASM, config, &[])
        .await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_is_woken_by_the_cli_within_its_hour_long_poll() {
    let cluster = Cluster::start();
    the_cli_wakes_an_idle_daemon(&counting_env(&cluster, "{}").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_while_its_database_is_down_waits_for_it() {
    let cluster = Cluster::start();
    let env = counting_env(&cluster, "{}").await;
    cluster.crash();
    let daemon = env.serve(&["--workers", "2"]);
    wait_for("the daemon to say it waits for the database", || async {
        let lines = daemon.log_lines();
        lines
            .iter()
            .any(|l| l.contains("cannot reach the database yet"))
            .then_some(())
    })
    .await;
    cluster.start_server();
    let lease = env.request_one("counted", &[]).await;
    wait_lease(&env.store().await, lease, LeaseStatus::Active).await;
}

/// The daemons holding claims right now, by the process id in their names.
async fn claimants(url: &str) -> BTreeSet<u32> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT owner FROM work_item WHERE owner IS NOT NULL")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    owners
        .iter()
        .filter_map(|owner| owner.rsplit(':').next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_daemons_share_the_work_and_release_each_lease_once() {
    let cluster = Cluster::start();
    let env = counting_env(&cluster, r#"{"max_resources": 30, "check_delay_ms": 100}"#).await;
    let daemons: Vec<Daemon> = (0..3)
        .map(|_| env.serve(&["--workers", "2", "--poll", "1h"]))
        .collect();
    let pids: BTreeSet<u32> = daemons.iter().map(Daemon::pid).collect();
    let store = env.store().await;
    let leases = env.request("counted", &["--count", "30"]).await;

    let seen = std::sync::Mutex::new(BTreeSet::new());
    wait_for("every daemon to hold a claim", || async {
        let now = claimants(&env.url).await;
        let mut seen = seen.lock().unwrap();
        seen.extend(now);
        pids.is_subset(&seen).then_some(())
    })
    .await;
    for &lease in &leases {
        wait_lease(&store, lease, LeaseStatus::Active).await;
    }
    env.ok(&["lease", "release", "--all"]).await;
    for &lease in &leases {
        wait_lease(&store, lease, LeaseStatus::Destroyed).await;
        let commands = settled_commands(&store, lease).await;
        assert_eq!(applied(&commands), 1, "{lease}: {commands:?}");
        assert_eq!(count_logs(&store, lease, RELEASE_LINE).await, 1, "{lease}");
        assert_eq!(count_kind(&store, lease, "lease.destroyed").await, 1);
    }
}

/// Daemons for the soak, with a short claim TTL so that a killed one's work moves on quickly.
fn soak_daemon(env: &Env) -> Daemon {
    env.serve(&[
        "--workers",
        "4",
        "--claim-ttl",
        "2s",
        "--call-timeout",
        "10s",
    ])
}

/// Kills a daemon that holds a claim with SIGKILL and starts another. Claims come and go
/// between looks (a yielding acquisition holds none while it waits); if ten seconds of looking
/// every 10 ms see none held by a live daemon, the first daemon is killed anyway: the soak's
/// assertions are about what every lease comes to, not about where the kill landed.
async fn kill_a_working_daemon(env: &Env, daemons: &mut Vec<Daemon>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let victim = loop {
        let working = claimants(&env.url).await;
        if let Some(worker) = daemons.iter().position(|d| working.contains(&d.pid())) {
            break worker;
        }
        if tokio::time::Instant::now() >= deadline {
            break 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let mut victim = daemons.remove(victim);
    victim.kill9().await;
    daemons.push(soak_daemon(env));
}

/// What else goes wrong in a round of the soak, after a daemon was killed.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every Drydock connection is cut (`pg_terminate_backend`).
    CutConnections,
    /// The server crashes and comes back.
    RestartServer,
}

async fn inflict(cluster: &Cluster, fault: Fault) {
    match fault {
        Fault::CutConnections => {
            wait_for("connections to cut", || async {
                (cluster.terminate_drydock_connections().await > 0).then_some(())
            })
            .await
        }
        Fault::RestartServer => cluster.restart(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_of_killed_daemons_cut_connections_and_a_server_restart_releases_each_lease_once() {
    let cluster = Cluster::start();
    // Acquisitions take three yields (a second each) and releases spin 600 ms in the hook, so
    // that work is in flight for seconds after each request and release: every fault lands on
    // it.
    let config = r#"{"max_resources": 8, "check_delay_ms": 100, "acquire_yields": 3,
                     "release_delay_ms": 600}"#;
    let env = counting_env(&cluster, config).await;
    let mut daemons: Vec<Daemon> = (0..3).map(|_| soak_daemon(&env)).collect();
    let store = env.store().await;
    let mut all = Vec::new();
    let rounds = [
        (Fault::CutConnections, Fault::RestartServer),
        (Fault::RestartServer, Fault::CutConnections),
        (Fault::CutConnections, Fault::CutConnections),
    ];
    for (while_acquiring, while_releasing) in rounds {
        let leases = env.request("counted", &["--count", "10"]).await;
        kill_a_working_daemon(&env, &mut daemons).await;
        inflict(&cluster, while_acquiring).await;
        for &lease in &leases {
            wait_lease(&store, lease, LeaseStatus::Active).await;
        }

        let ids: Vec<String> = leases.iter().map(ToString::to_string).collect();
        let mut release = vec!["lease", "release"];
        release.extend(ids.iter().map(String::as_str));
        env.ok(&release).await;
        kill_a_working_daemon(&env, &mut daemons).await;
        inflict(&cluster, while_releasing).await;
        all.extend(leases);
    }

    for &lease in &all {
        wait_lease(&store, lease, LeaseStatus::Destroyed).await;
        let commands = settled_commands(&store, lease).await;
        assert_eq!((commands.len(), applied(&commands)), (1, 1), "{lease}");
        assert_eq!(
            count_logs(&store, lease, RELEASE_LINE).await,
            1,
            "{lease}: the release logic applied once"
        );
        assert_eq!(count_kind(&store, lease, "lease.destroyed").await, 1);
    }
}

/// How many leases of the database at `url` are destroyed, read on a connection of the test's
/// own (not named `drydock`, so the cuts spare it).
async fn destroyed(watcher: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM lease WHERE status = 'destroyed'")
        .fetch_one(watcher)
        .await
        .unwrap()
}

/// The group commit's shared transaction fails again and again (every Drydock connection is cut
/// each time ten more leases are destroyed, while 400 releases are applied, 64 plans to a
/// transaction) on a daemon that gives up after two failed runs: a failed batch is the store's
/// trouble, not the leases', so every release still ends as a release, applied once. The cuts
/// follow progress, not the clock: however slow the machine, the daemon gets to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_end_as_releases_while_group_commits_keep_failing() {
    const LEASES: i64 = 400;
    /// Leases destroyed between two cuts.
    const PROGRESS_PER_CUT: i64 = 10;
    let cluster = Cluster::start();
    let env = counting_env(&cluster, r#"{"max_resources": 4, "release_delay_ms": 20}"#).await;
    let _daemon = env.serve(&["--group-commit", "64", "--max-attempts", "2"]);
    let leases = active_leases(&env, LEASES as u32).await;
    env.ok(&["lease", "release", "--all"]).await;

    let watcher = sqlx::PgPool::connect(&env.url).await.unwrap();
    let (cuts, destroyed_at_last_cut) = (Cell::new(0), Cell::new(-PROGRESS_PER_CUT));
    wait_for(
        "every lease to be destroyed while connections are cut",
        || {
            let (cluster, watcher) = (&cluster, &watcher);
            let (cuts, destroyed_at_last_cut) = (&cuts, &destroyed_at_last_cut);
            async move {
                let done = destroyed(watcher).await;
                if done == LEASES {
                    return Some(());
                }
                if done >= destroyed_at_last_cut.get() + PROGRESS_PER_CUT {
                    cluster.terminate_drydock_connections().await;
                    cuts.set(cuts.get() + 1);
                    destroyed_at_last_cut.set(done);
                }
                None
            }
        },
    )
    .await;
    let cuts = cuts.get();
    assert!(cuts > 3, "the releases were over before the cuts began");
    each_released_once(&env.store().await, &leases).await;
}

/// Another session holds `work_item` locked against writes for 8 s while a ten-second exec runs
/// under a 9 s claim: the daemon is alive and only its store stalls, so the exec is paused at
/// most, never killed, and the blueprint sees its real result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eight_second_store_stall_neither_kills_nor_breaks_a_running_exec() {
    use sqlx::Connection;
    let cluster = Cluster::start();
    let run = ShellRun::start(Env::with_url(cluster.database().await), "9s", 10).await;
    let mut other = sqlx::PgConnection::connect(&run.env.url).await.unwrap();
    for statement in ["BEGIN", "LOCK TABLE work_item IN EXCLUSIVE MODE"] {
        sqlx::query(statement).execute(&mut other).await.unwrap();
    }
    // The stall itself: how long the other session keeps the lock.
    tokio::time::sleep(Duration::from_secs(8)).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    run.ran_once_to_its_end().await;
}
