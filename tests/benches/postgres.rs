//! PostgreSQL throughput and queue cost, with `pgbench -N` on the same throwaway cluster
//! (PostgreSQL's default durability: fsync, synchronous commit) as the reference. Printed as
//! Markdown for BENCHMARKS.md:
//!
//! - `pgbench`: `pgbench -N` (the TPC-B-like transaction without the two hot-row updates), 8
//!   clients, 10 s, on a scale-10 database: what this cluster commits per second;
//! - `daemons`: 1, 2 and 4 `drydock serve` processes (default settings: 64 workers; woken by
//!   NOTIFY, polling once a second as the backstop; group commit off, then at 64) on one fresh
//!   database with the host-pool blueprint; 500, then 5,000 leases requested at once, then all
//!   released. Lease lifecycles per second over the whole run, and fenced command transactions
//!   per second in the release phase (each consumes one release command under the fencing
//!   guard, applies the release and destroys the lease);
//! - `queue`: post, claim and release of one object with 10,000 and 1,000,000 objects in the
//!   database.
//!
//! Run: `cargo bench -p drydock-tests --bench postgres [-- pgbench|daemons|queue]`.

use drydock_host::domain::LeaseStatus;
use drydock_host::store::{self, Access, CommandKind, NewLease, ObjectId, Store, Workload};
use drydock_tests::measure::{Sections, queue_cost};
use drydock_tests::postgres::{Cluster, Durability};
use drydock_tests::{Daemon, Env};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Leases requested at once, as in the SQLite lifecycle benchmark.
const LEASE_COUNTS: [usize; 2] = [500, 5_000];
const DAEMON_COUNTS: [usize; 3] = [1, 2, 4];
const QUEUE_OPS: usize = 2_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(sections) = Sections::from_args() else {
        return;
    };
    let cluster = Cluster::start_with(Durability::Default);
    println!("| measurement | result |\n|---|---|");
    let reference = sections.run("pgbench").then(|| pgbench(&cluster));
    if sections.run("daemons") {
        for leases in LEASE_COUNTS {
            for daemons in DAEMON_COUNTS {
                for group_commit in ["1", "64"] {
                    throughput(&cluster, leases, daemons, group_commit, reference).await;
                }
            }
        }
    }
    if sections.run("queue") {
        for objects in [10_000, 1_000_000] {
            queue(&cluster, objects).await;
        }
    }
}

/// `pgbench -N` transactions per second on this cluster.
fn pgbench(cluster: &Cluster) -> f64 {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(cluster.binary("pgbench"))
            .args(cluster.client_args())
            .args(args)
            .output()
            .expect("running pgbench");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "pgbench {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    run(&["-i", "-q", "-s", "10", "postgres"]);
    let report = run(&["-N", "-n", "-c", "8", "-j", "2", "-T", "10", "postgres"]);
    let tps: f64 = report
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's report:\n{report}"));
    println!("| `pgbench -N`, 8 clients, 10 s (the reference) | {tps:.0} transactions/s |");
    tps
}

/// Lifecycles and fenced command transactions per second with `daemons` processes, each
/// committing up to `group_commit` workers' plans per transaction.
async fn throughput(
    cluster: &Cluster,
    leases: usize,
    daemons: usize,
    group_commit: &str,
    reference: Option<f64>,
) {
    let env = Env::with_url(cluster.database().await);
    env.add_host_pool().await;
    std::fs::create_dir_all("/tmp/drydock").unwrap();
    let running: Vec<Daemon> = (0..daemons)
        .map(|_| env.serve(&["--poll", "1s", "--group-commit", group_commit]))
        .collect();
    let store = env.store().await;
    // A warm-up lease makes the host's resource; every later lease shares it.
    let warm = request(&*store, 1).await;
    wait_all(&*store, &warm, LeaseStatus::Active).await;

    let started = Instant::now();
    let requested = request(&*store, leases).await;
    wait_all(&*store, &requested, LeaseStatus::Active).await;
    let releasing = Instant::now();
    store
        .command_post(&requested, CommandKind::Release, "bench")
        .await
        .unwrap();
    wait_all(&*store, &requested, LeaseStatus::Destroyed).await;
    let lifecycles = leases as f64 / started.elapsed().as_secs_f64();
    let commands = leases as f64 / releasing.elapsed().as_secs_f64();
    let ratio = |rate: f64| {
        reference.map_or(String::new(), |tps| {
            format!(" ({:.2}× pgbench -N)", rate / tps)
        })
    };
    println!(
        "| {leases} leases, {daemons} daemon(s), group commit {group_commit}: lifecycles / fenced command transactions | {lifecycles:.0}/s{} / {commands:.0}/s{} |",
        ratio(lifecycles),
        ratio(commands)
    );
    drop(running);
}

async fn request(store: &dyn Store, count: usize) -> Vec<ObjectId> {
    let new = NewLease {
        resource_type: "host".into(),
        owner: "bench".into(),
        ..NewLease::default()
    };
    let leases = store.lease_insert(&new, count).await.unwrap();
    leases.iter().map(|l| l.id).collect()
}

/// Waits (polling every 5 ms with one query) until every lease has `status`.
async fn wait_all(store: &dyn Store, leases: &[ObjectId], status: LeaseStatus) {
    let wanted: HashSet<ObjectId> = leases.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = store.lease_list(Some(status)).await.unwrap();
        let done = listed.iter().filter(|l| wanted.contains(&l.id)).count();
        if done == leases.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} {status}",
            leases.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Post, claim and release cost with `objects` idle active leases in the database.
async fn queue(cluster: &Cluster, objects: usize) {
    let url = cluster.database().await;
    let store = store::open(&url, Workload::Daemon, Access::Migrate)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in [
        "INSERT INTO lease (resource_type, status, owner, created_at, updated_at)
         SELECT 'host', 'active', 'bench', 0, 0 FROM generate_series(1, $1)",
        "INSERT INTO work_item (object) SELECT 'L' || id FROM lease",
    ] {
        sqlx::query(statement)
            .bind(objects as i64)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    let cost = queue_cost(&*store, objects, QUEUE_OPS).await;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| post / claim / release with {objects} objects in the database | {:.0} / {:.0} / {:.0} µs |",
        us(cost.post),
        us(cost.claim),
        us(cost.release)
    );
}
