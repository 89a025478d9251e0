//! Hostile neighbours: a healthy `host` lease beside eight hostile blueprints and a user flooding
//! bad requests, for five minutes; printed as Markdown for BENCHMARKS.md.
//!
//! One `drydock serve` with its defaults, host-pool (one local host), working-copy, and eight
//! blueprints of the misbehaving test component, each misbehaving within every per-step limit:
//!
//! - `fan-out-1` to `fan-out-5`, five fanning out at once: every resource asks for 8
//!   supporting leases of its own type;
//! - `log-flood`: yields for 0 ms forever, logging about a megabyte each time;
//! - `exec-yield`: leases a host, then runs an exec on it and yields, at every call;
//! - `fail-activation`: every activation fails.
//!
//! Each gets a lease at the start and another every ten seconds, requested by the user
//! `hostile`; the user `flood` requests 20 working copies of a repository that does not exist
//! every ten seconds, and right after each flood the user `valid` requests one working copy of
//! a repository that does (timed as the healthy host leases are, and three times alone before
//! the hostile load starts, for comparison). Meanwhile, every two seconds, a healthy `host` lease is requested
//! through the HTTP API. Each healthy request is timed from the request until the store shows
//! it active (polled every 2 ms), then released. At the end it prints those times, the daemon's
//! peak memory (`VmHWM`) and how much the database grew (the file and its WAL).
//!
//! Run: `cargo bench -p drydock-tests --bench hostile-neighbours` (`HOSTILE_SECONDS=60` for a
//! shorter run).

use drydock_host::domain::LeaseStatus;
use drydock_host::store::ObjectId;
use drydock_host::store::Store;
use drydock_tests::api;
use drydock_tests::git::repository;
use drydock_tests::measure::quantile;
use drydock_tests::{Env, MISBEHAVE_WASM};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a healthy lease is requested.
const SPACING: Duration = Duration::from_secs(2);
/// How often the hostile users come back for more.
const WAVE: Duration = Duration::from_secs(10);
/// The hostile blueprints: name and misbehaviour.
const HOSTILE: [(&str, &str); 8] = [
    ("fan-out-1", "fan-out"),
    ("fan-out-2", "fan-out"),
    ("fan-out-3", "fan-out"),
    ("fan-out-4", "fan-out"),
    ("fan-out-5", "fan-out"),
    ("log-flood", "log-flood"),
    ("exec-yield", "exec-yield"),
    ("fail-activation", "fail-activation"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("HOSTILE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let world = tempfile::tempdir().unwrap();
    let (hosts, origin) = (world.path().join("hosts"), world.path().join("origin"));
    std::fs::create_dir_all(&hosts).unwrap();
    repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    for (name, mode) in HOSTILE {
        let config = format!(r#"{{"mode": "{mode}"}}"#);
        // Each may lease what its misbehaviour needs: its own type, or a host.
        let uses = match mode {
            "exec-yield" => "use:host-pool".to_string(),
            _ => format!("use:{name}"),
        };
        env.add_blueprint(name, MISBEHAVE_WASM, &config, &[&uses])
            .await;
    }
    let database = env.dir().join("drydock.db");
    let mut daemon = env.serve(&[]);
    let api = daemon.url().await;
    let client = reqwest::Client::new();
    let store = env.store().await;
    let size_before = database_size(&database);
    let missing = format!("repository={}", world.path().join("missing").display());
    let valid = format!("repository={}", origin.display());

    // A valid working copy, from request (CLI) to active, then released.
    let valid_copy = || {
        let (env, valid, store) = (&env, &valid, &store);
        async move {
            let args = [
                "lease",
                "request",
                "--type",
                "working-copy",
                "--attr",
                valid,
            ];
            let started = Instant::now();
            let out = env.ok_as("valid", &args).await;
            let id: ObjectId = out.trim().parse().unwrap();
            active(store, id).await;
            let took = started.elapsed();
            env.ok_as("valid", &["lease", "release", &id.to_string()])
                .await;
            took
        }
    };
    let mut alone = Vec::new();
    for _ in 0..3 {
        alone.push(valid_copy().await);
    }
    let wave = || {
        let (env, missing) = (&env, &missing);
        async move {
            for (name, _) in HOSTILE {
                let args = ["lease", "request", "--type", "trouble", "--blueprint", name];
                env.ok_as("hostile", &args).await;
            }
            let args = [
                "lease",
                "request",
                "--type",
                "working-copy",
                "--attr",
                missing,
                "--count",
                "20",
            ];
            env.ok_as("flood", &args).await;
            valid_copy().await
        }
    };
    let run = Instant::now();
    let mut last_wave: Option<Instant> = None;
    let (mut samples, mut copies) = (Vec::new(), Vec::new());
    while run.elapsed() < Duration::from_secs(seconds) {
        if last_wave.is_none_or(|at| at.elapsed() >= WAVE) {
            copies.push(wave().await);
            last_wave = Some(Instant::now());
        }
        let started = Instant::now();
        let id = api::request_host(&client, &api).await;
        active(&store, id).await;
        samples.push(started.elapsed());
        api::release(&client, &api, id).await;
        tokio::time::sleep(SPACING.saturating_sub(started.elapsed())).await;
    }
    let memory = |field: &str| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap() / 1024)
            .unwrap()
    };
    let growth = database_size(&database).saturating_sub(size_before);
    let resources = store.resource_list(None).await.unwrap();
    let leases = store.lease_list(None).await.unwrap();
    let pending = leases
        .iter()
        .filter(|l| l.status == LeaseStatus::Pending)
        .count();
    let trials = samples.len();
    let first = samples[0];
    println!("| measurement | result |\n|---|---|");
    println!(
        "| healthy `host` lease, request (API) → active, one every {} s for {} s ({trials} trials) | first {:.0} ms; **p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms** |",
        SPACING.as_secs(),
        run.elapsed().as_secs(),
        ms(first),
        ms(quantile(&mut samples, 0.5)),
        ms(quantile(&mut samples, 0.9)),
        ms(*samples.last().unwrap())
    );
    let alone = quantile(&mut alone, 0.5);
    println!(
        "| valid `working-copy` lease (cold: a new copy), request (CLI) → active, alone before the run (3 trials) | p50 {:.0} ms |",
        ms(alone)
    );
    println!(
        "| the same right after 20 bad ones, during the run ({} trials) | **p50 {:.0} ms, max {:.0} ms: {:.0} ms and {:.0} ms more than alone** |",
        copies.len(),
        ms(quantile(&mut copies, 0.5)),
        ms(*copies.last().unwrap()),
        ms(quantile(&mut copies, 0.5).saturating_sub(alone)),
        ms(copies.last().unwrap().saturating_sub(alone))
    );
    println!(
        "| daemon memory | **peak {} MiB**, at the end {} MiB |",
        memory("VmHWM:"),
        memory("VmRSS:")
    );
    let wal = std::fs::metadata(database.with_extension("db-wal")).map_or(0, |m| m.len());
    println!(
        "| database growth (file and WAL) | **{:.1} MiB** (the WAL {:.1} MiB of it) |",
        mib(growth),
        mib(wal)
    );
    let db = drydock_tests::sqlite(&env.url);
    let mut held = Vec::new();
    for (what, query) in [
        (
            "log entries the blueprints' steps wrote",
            "SELECT count(*), coalesce(sum(length(message)), 0) FROM log WHERE charged IS NOT NULL",
        ),
        (
            "log entries of the host",
            "SELECT count(*), coalesce(sum(length(message)), 0) FROM log WHERE charged IS NULL",
        ),
        (
            "steps (their bodies)",
            "SELECT count(*), coalesce(sum(length(step)), 0) FROM step",
        ),
    ] {
        let (rows, bytes): (i64, i64) = db
            .query_row(query, [], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        held.push(format!("{what}: {rows} ({:.1} MiB)", mib(bytes as u64)));
    }
    println!(
        "| what the database holds at the end | {} |",
        held.join("; ")
    );
    println!(
        "| objects at the end | {} resources, {} leases ({pending} pending) |",
        resources.len(),
        leases.len()
    );
    let _ = daemon.terminate().await;
}

/// Waits until the lease is active, looking every 2 ms.
async fn active(store: &Arc<dyn Store>, id: ObjectId) {
    while store.lease_get(id).await.unwrap().status != LeaseStatus::Active {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The database file and its WAL, in bytes.
fn database_size(database: &Path) -> u64 {
    let wal = database.with_extension("db-wal");
    [database, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
