//! Queue and lifecycle benchmarks on SQLite (`synchronous=FULL`), printed as Markdown for
//! BENCHMARKS.md:
//!
//! - release latency: a release posted in-process → the lease destroyed, on an idle daemon;
//! - full lease lifecycle throughput with the host-pool blueprint, with the write transactions a
//!   lifecycle takes and the disk's measured commit rate beside it;
//! - the cost of post + claim + release with 10k objects in the database against 1M;
//! - contention: 64 concurrent releasers on one lease, and random concurrent releases over
//!   10,000 leases, counting applied releases and destructions per lease;
//! - waking at capacity: 500 and 5,000 leases requested at once on a one-host pool (all but
//!   the first wait for the host's resource to become active), against the lifecycle rate;
//! - retention: the lifecycle rate with 100,000 finished lifecycles kept in the database,
//!   against an empty one.
//!
//! Run: `cargo bench -p drydock-tests --bench queue [-- SECTION…]`, where the sections are
//! `commit`, `latency`, `lifecycle`, `queue`, `capacity`, `retention` and `contention` (all by
//! default).

use drydock_host::daemon::{self, DaemonConfig};
use drydock_host::domain::LeaseStatus;
use drydock_host::plugin::{Runtime, RuntimeConfig, digest};
use drydock_host::queue::Queue;
use drydock_host::store::sqlite::SqliteStore;
use drydock_host::store::{
    CommandFilter, CommandKind, NewBlueprint, NewLease, ObjectId, Store, SystemClock,
};
use drydock_host::worker::Plugins;
use drydock_tests::measure::{Sections, quantile, queue_cost};
use drydock_tests::{HOST_POOL_CONFIG, HOST_POOL_WASM};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LATENCY_SAMPLES: usize = 300;
const LIFECYCLES: usize = 500;
const QUEUE_OPS: usize = 2_000;
const CONTENDED_LEASES: usize = 10_000;
const RELEASERS: usize = 16;
const FINISHED_KEPT: usize = 100_000;
/// The daemon's default: up to 64 workers' plans per transaction.
const GROUP_COMMIT: usize = 64;
/// The daemon's default number of update workers.
const WORKERS: usize = daemon::DEFAULT_WORKERS;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(sections) = Sections::from_args() else {
        return;
    };
    if std::env::var_os("DRYDOCK_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("DRYDOCK_LOG"))
            .init();
    }
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let dir = dir.path();
    println!("| measurement | result |\n|---|---|");
    if sections.run("commit") {
        commit_rate(dir).await;
    }
    if sections.run("latency") {
        release_latency(dir).await;
    }
    if sections.run("lifecycle") {
        lifecycle_throughput(dir).await;
    }
    if sections.run("queue") {
        for objects in [10_000, 1_000_000] {
            queue_ops(dir, objects).await;
        }
    }
    if sections.run("capacity") {
        for count in [500, 5_000] {
            capacity_wake(dir, count).await;
        }
    }
    if sections.run("retention") {
        retention_cost(dir).await;
    }
    if sections.run("contention") {
        contention(dir).await;
    }
}

async fn open(dir: &std::path::Path, name: &str) -> Arc<SqliteStore> {
    let url = format!("sqlite://{}", dir.join(name).display());
    Arc::new(
        SqliteStore::open(&url, Arc::new(SystemClock))
            .await
            .unwrap(),
    )
}

/// Single-row transactions per second on this disk with the store's settings.
async fn commit_rate(dir: &std::path::Path) -> f64 {
    let store = open(dir, "commit.db").await;
    let new = NewLease {
        resource_type: "host".into(),
        owner: "bench".into(),
        ..NewLease::default()
    };
    let n = 500;
    let started = Instant::now();
    for _ in 0..n {
        store.lease_insert(&new, 1).await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "| disk commit rate (one `lease_insert` transaction, WAL, synchronous=FULL) | {rate:.0} commits/s |"
    );
    rate
}

/// A store with the host-pool blueprint and an in-process daemon on it: `drydock serve`'s
/// defaults but for `group_commit` and `workers` (blueprint calls: a quarter of them, as there).
async fn daemon_with_host_pool(
    dir: &std::path::Path,
    name: &str,
    group_commit: usize,
    workers: usize,
) -> (Arc<SqliteStore>, Queue, tokio::sync::oneshot::Sender<()>) {
    let store = open(dir, name).await;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let wasm = std::fs::read(HOST_POOL_WASM).unwrap();
    let plugin = runtime.load(&wasm).unwrap();
    let description = plugin.describe().await.unwrap().value;
    store
        .blueprint_insert(NewBlueprint {
            name: "host-pool".into(),
            digest: digest(&wasm),
            wasm,
            component_name: description.name,
            resource_type: description.resource_type,
            config: HOST_POOL_CONFIG.into(),
            grants: vec!["local:/tmp/drydock".parse().unwrap()],
        })
        .await
        .unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let queue = Queue::new(dyn_store);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = DaemonConfig {
        retention: None,
        group_commit,
        workers,
        ..DaemonConfig::default()
    };
    tokio::spawn(daemon::run(
        config,
        queue.clone(),
        Plugins::new(runtime, workers / 4),
        async {
            let _ = stopped.await;
        },
    ));
    (store, queue, stop)
}

async fn request(store: &SqliteStore, count: usize) -> Vec<ObjectId> {
    let new = NewLease {
        resource_type: "host".into(),
        owner: "bench".into(),
        ..NewLease::default()
    };
    store
        .lease_insert(&new, count)
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect()
}

/// Waits (polling every 200 µs, on the thread) until every lease has `status`: precise, for
/// latencies.
async fn wait_all(store: &SqliteStore, leases: &[ObjectId], status: LeaseStatus) {
    for lease in leases {
        while store.lease_get(*lease).await.unwrap().status != status {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Waits (polling every millisecond, yielding the thread to the daemon) until every lease has
/// `status`: for throughput, where a blocked runtime thread would slow the daemon down.
async fn wait_all_yielding(store: &SqliteStore, leases: &[ObjectId], status: LeaseStatus) {
    for lease in leases {
        while store.lease_get(*lease).await.unwrap().status != status {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn release_latency(dir: &std::path::Path) {
    let (store, queue, _stop) =
        daemon_with_host_pool(dir, "latency.db", GROUP_COMMIT, WORKERS).await;
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let lease = request(&store, 1).await;
        wait_all(&store, &lease, LeaseStatus::Active).await;
        tokio::time::sleep(Duration::from_millis(2)).await; // let the daemon go idle
        let started = Instant::now();
        queue
            .post(lease[0], CommandKind::Release, "bench")
            .await
            .unwrap();
        wait_all(&store, &lease, LeaseStatus::Destroyed).await;
        tracing::debug!("seen destroyed");
        samples.push(started.elapsed());
    }
    let mut ms = |q: f64| quantile(&mut samples, q).as_secs_f64() * 1e3;
    println!(
        "| release latency, posted in-process → destroyed, idle daemon ({LATENCY_SAMPLES} samples) | p50 {:.2} ms, p99 {:.2} ms |",
        ms(0.5),
        ms(0.99)
    );
}

async fn lifecycle_throughput(dir: &std::path::Path) {
    // Group commit off, then on, then on with the workers' old default (16).
    let settings = [(1, WORKERS), (GROUP_COMMIT, WORKERS), (GROUP_COMMIT, 16)];
    for count in [LIFECYCLES, 10 * LIFECYCLES] {
        for (group_commit, workers) in settings {
            let disk = commit_rate(dir).await;
            let name = format!("lifecycle-{count}-{group_commit}-{workers}.db");
            let (store, queue, _stop) =
                daemon_with_host_pool(dir, &name, group_commit, workers).await;
            let watcher = open(dir, &name).await;
            let (rate, per) = lifecycles(&store, &watcher, &queue, count).await;
            println!(
                "| lease lifecycles (request → active → release → destroyed), {count} at once, {workers} workers, group commit {group_commit} | {rate:.0} lifecycles/s ({:.2}× the disk's commit rate) |",
                rate / disk
            );
            println!(
                "| per lifecycle: write transactions fsync'd / all (claims and claim releases are not fsync'd), reads, blueprint calls | {:.2} / {:.2}, {:.1}, {:.2} |",
                per.durable, per.writes, per.reads, per.calls
            );
        }
    }
}

/// What one lifecycle cost the daemon, on average.
struct PerLifecycle {
    /// Write transactions.
    writes: f64,
    /// Of those, the fsync'd ones.
    durable: f64,
    /// Read statements.
    reads: f64,
    /// Blueprint calls.
    calls: f64,
}

/// The daemon's counters: write transactions, durable ones, reads, blueprint calls.
fn counters(store: &SqliteStore) -> [u64; 4] {
    [
        store.write_transactions(),
        store.durable_transactions(),
        store.reads(),
        drydock_host::metrics::global().blueprint_calls_total(),
    ]
}

/// `count` lifecycles on a warm host (its resource already active), watched through
/// `watcher` (another handle on the database, so that the watching is not counted): the
/// rate, and what a lifecycle cost.
async fn lifecycles(
    store: &SqliteStore,
    watcher: &SqliteStore,
    queue: &Queue,
    count: usize,
) -> (f64, PerLifecycle) {
    let warm = request(store, 1).await;
    wait_all(watcher, &warm, LeaseStatus::Active).await;
    let before = counters(store);
    let started = Instant::now();
    let leases = request(store, count).await;
    wait_all_yielding(watcher, &leases, LeaseStatus::Active).await;
    queue
        .post_all(&leases, CommandKind::Release, "bench")
        .await
        .unwrap();
    wait_all_yielding(watcher, &leases, LeaseStatus::Destroyed).await;
    let elapsed = started.elapsed();
    let after = counters(store);
    let per = |i: usize| (after[i] - before[i]) as f64 / count as f64;
    let cost = PerLifecycle {
        writes: per(0),
        durable: per(1),
        reads: per(2),
        calls: per(3),
    };
    (count as f64 / elapsed.as_secs_f64(), cost)
}

/// `count` leases requested at once on a fresh one-host pool: the first makes the host's
/// resource, every other waits for it and is woken when it becomes active.
async fn capacity_wake(dir: &std::path::Path, count: usize) {
    let (store, _queue, _stop) =
        daemon_with_host_pool(dir, &format!("capacity-{count}.db"), GROUP_COMMIT, WORKERS).await;
    let started = Instant::now();
    let leases = request(&store, count).await;
    wait_all(&store, &leases, LeaseStatus::Active).await;
    let elapsed = started.elapsed();
    println!(
        "| {count} leases requested at once on a one-host pool → all active | {:.2} s ({:.0} leases/s) |",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

/// The lifecycle rate on an empty database, then with `FINISHED_KEPT` finished lifecycles
/// (destroyed leases and resources, consumed commands, their logs) in it.
async fn retention_cost(dir: &std::path::Path) {
    let (store, queue, _stop) =
        daemon_with_host_pool(dir, "retention.db", GROUP_COMMIT, WORKERS).await;
    let watcher = open(dir, "retention.db").await;
    let (empty, _) = lifecycles(&store, &watcher, &queue, 300).await;
    let url = format!("sqlite://{}", dir.join("retention.db").display());
    let db = drydock_tests::sqlite(&url);
    for statement in [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO resource (blueprint_id, resource_type, status, created_at, updated_at)
         SELECT 1, 'host', 'destroyed', 0, 0 FROM n",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO lease (resource_type, status, owner, resource_id, created_at, updated_at)
         SELECT 'host', 'destroyed', 'bench', (SELECT max(id) FROM resource), 0, 0 FROM n",
        "INSERT INTO command (target, kind, author, created_at, consumed_at, outcome)
         SELECT 'L' || id, 'release', 'bench', 0, 0, 'applied' FROM lease WHERE status = 'destroyed'",
        "INSERT INTO log (object, kind, message, created_at)
         SELECT 'L' || id, 'lease.destroyed', 'destroyed', 0 FROM lease WHERE status = 'destroyed'",
    ] {
        let statement = statement.replace("?1", &FINISHED_KEPT.to_string());
        db.execute_batch(&statement).unwrap();
    }
    let (full, _) = lifecycles(&store, &watcher, &queue, 300).await;
    println!(
        "| lifecycles/s with an empty database / with {FINISHED_KEPT} finished lifecycles kept (300 each) | {empty:.0} / {full:.0} ({:.2}×) |",
        full / empty
    );
}

/// Fills the database with `objects` idle active leases, then times post, claim and release.
async fn queue_ops(dir: &std::path::Path, objects: usize) {
    let name = format!("queue-{objects}.db");
    let store = open(dir, &name).await;
    let url = format!("sqlite://{}", dir.join(&name).display());
    let db = drydock_tests::sqlite(&url);
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO lease (resource_type, status, owner, created_at, updated_at)
         SELECT 'host', 'active', 'bench', 0, 0 FROM n",
        [objects as i64],
    )
    .unwrap();
    db.execute_batch("INSERT INTO work_item (object) SELECT 'L' || id FROM lease")
        .unwrap();
    drop(db);

    let cost = queue_cost(&*store, objects, QUEUE_OPS).await;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| post / claim / release with {objects} objects in the database | {:.0} / {:.0} / {:.0} µs |",
        us(cost.post),
        us(cost.claim),
        us(cost.release)
    );
}

/// Brief §7's contention targets: 64 concurrent releasers on one lease make one release, and
/// random concurrent releases over many leases make no double release. Counted, not timed.
async fn contention(dir: &std::path::Path) {
    let (store, queue, _stop) =
        daemon_with_host_pool(dir, "contention.db", GROUP_COMMIT, WORKERS).await;
    let one = request(&store, 1).await;
    wait_all(&store, &one, LeaseStatus::Active).await;
    let posts: Vec<_> = (0..64)
        .map(|i| {
            let queue = queue.clone();
            let lease = one[0];
            tokio::spawn(async move {
                queue
                    .post(lease, CommandKind::Release, &format!("releaser-{i}"))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut accepted = 0;
    for post in posts {
        accepted += usize::from(post.await.unwrap());
    }
    wait_all(&store, &one, LeaseStatus::Destroyed).await;
    let (applied, destroyed, doubles) = settle(&store, &one).await;
    println!(
        "| 64 concurrent releasers on one lease | {accepted} posts accepted, {applied} applied, {destroyed} destroyed, double releases: {doubles} |"
    );

    let leases = request(&store, CONTENDED_LEASES).await;
    wait_all(&store, &leases, LeaseStatus::Active).await;
    let started = Instant::now();
    let releasers: Vec<_> = (0..RELEASERS as u64)
        .map(|seed| {
            let (queue, leases) = (queue.clone(), leases.clone());
            tokio::spawn(async move {
                let mut accepted = 0;
                for i in 0..CONTENDED_LEASES as u64 {
                    let pick = (i * 7919 + seed * 104_729) % CONTENDED_LEASES as u64;
                    let posted = queue
                        .post(leases[pick as usize], CommandKind::Release, "bench")
                        .await;
                    accepted += usize::from(posted.is_ok());
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for releaser in releasers {
        accepted += releaser.await.unwrap();
    }
    wait_all(&store, &leases, LeaseStatus::Destroyed).await;
    let elapsed = started.elapsed();
    let (applied, destroyed, doubles) = settle(&store, &leases).await;
    println!(
        "| {CONTENDED_LEASES} active leases, {RELEASERS} releasers posting {} releases at random | {accepted} posts accepted (the rest refused: already destroyed), {applied} applied, {destroyed} destroyed, double releases: {doubles}; all destroyed in {:.1} s |",
        RELEASERS * CONTENDED_LEASES,
        elapsed.as_secs_f64()
    );
}

/// Waits until no command to `leases` is queued. Returns how many were applied, how many
/// destructions were logged, and how many leases were released or destroyed more than once.
async fn settle(store: &SqliteStore, leases: &[ObjectId]) -> (usize, usize, usize) {
    let wanted: HashSet<ObjectId> = leases.iter().copied().collect();
    let wanted = &wanted;
    let ours = |pending: bool| async move {
        let filter = CommandFilter {
            target: None,
            pending,
        };
        let all = store.command_list(&filter).await.unwrap();
        all.into_iter()
            .filter(|c| wanted.contains(&c.target))
            .collect::<Vec<_>>()
    };
    while !ours(true).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut applied: HashMap<ObjectId, usize> = HashMap::new();
    for command in ours(false).await {
        if command.outcome.as_deref() == Some("applied") {
            *applied.entry(command.target).or_default() += 1;
        }
    }
    let mut destroyed: HashMap<ObjectId, usize> = HashMap::new();
    for entry in store.log_list(None, 0, i64::MAX).await.unwrap() {
        if entry.kind == "lease.destroyed" && wanted.contains(&entry.object) {
            *destroyed.entry(entry.object).or_default() += 1;
        }
    }
    let doubles = wanted
        .iter()
        .filter(|l| applied.get(l) > Some(&1) || destroyed.get(l) > Some(&1))
        .count();
    (applied.values().sum(), destroyed.values().sum(), doubles)
}
