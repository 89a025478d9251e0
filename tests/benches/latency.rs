//! Latency as a user sees it: a running `drydock serve` (default 250 ms poll) with the
//! host-pool blueprint; leases requested and released by the CLI (another process) on the
//! database, by the CLI through the daemon's API (`--server`), or through the HTTP API (the
//! daemon's own process, the reference); the lease's status polled every 2 ms from the
//! database. On SQLite and on PostgreSQL (a throwaway cluster with PostgreSQL's default
//! durability). Printed as Markdown for BENCHMARKS.md.
//!
//! Also a working-copy lease on a warm copy (fetch, checkout and clean by git on a local host),
//! and `drydock exec` from its start to the command's first byte of output, on the database's
//! machine and through the API.
//!
//! Run: `cargo bench -p drydock-tests --bench latency [-- sqlite|working-copy|postgres|exec]`.

use drydock_host::domain::LeaseStatus;
use drydock_host::store::{ObjectId, Store};
use drydock_tests::Env;
use drydock_tests::api;
use drydock_tests::measure::{Sections, quantile};
use drydock_tests::postgres::{Cluster, Durability};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIALS: usize = 30;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(sections) = Sections::from_args() else {
        return;
    };
    println!("| backend, path ({TRIALS} trials each) | p50 | p90 | max |\n|---|---|---|---|");
    if sections.run("sqlite") {
        measure("SQLite", Env::new()).await;
    }
    if sections.run("working-copy") {
        working_copy().await;
    }
    if sections.run("exec") {
        exec().await;
    }
    if sections.run("postgres") {
        let cluster = Cluster::start_with(Durability::Default);
        measure("PostgreSQL", Env::with_url(cluster.database().await)).await;
    }
}

/// Where a request or release comes from.
#[derive(Clone, Copy)]
enum Via {
    /// The CLI on the database.
    Cli,
    /// The CLI through the daemon's API (`--server`).
    Remote,
    /// An HTTP client in this process.
    Api,
}

/// `drydock ARGS…` through the daemon at `server`, with the operator token.
fn remote(env: &Env, server: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = env.command(args);
    command
        .env("DRYDOCK_SERVER", server)
        .env("DRYDOCK_TOKEN", drydock_tests::TOKEN);
    command
}

/// Runs `command` to a successful end; its stdout.
async fn succeed(mut command: tokio::process::Command) -> String {
    let out = command.output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

async fn measure(backend: &str, env: Env) {
    env.add_host_pool().await;
    std::fs::create_dir_all("/tmp/drydock").unwrap();
    let mut daemon = env.serve(&["--poll", "250ms"]);
    let api = daemon.url().await;
    let store = env.store().await;
    let client = reqwest::Client::new();
    // A warm-up lease makes the host's resource; every later lease shares it.
    let warm = env.request_one("host", &[]).await;
    wait(&store, warm, LeaseStatus::Active).await;

    for via in [Via::Cli, Via::Remote, Via::Api] {
        let (mut requests, mut releases) = (Vec::new(), Vec::new());
        for _ in 0..TRIALS {
            idle().await;
            let started = Instant::now();
            let lease = match via {
                Via::Cli => env.request_one("host", &[]).await,
                Via::Remote => {
                    let args = ["lease", "request", "--type", "host"];
                    succeed(remote(&env, &api, &args))
                        .await
                        .trim()
                        .parse()
                        .unwrap()
                }
                Via::Api => api::request_host(&client, &api).await,
            };
            wait(&store, lease, LeaseStatus::Active).await;
            requests.push(started.elapsed());

            idle().await;
            let started = Instant::now();
            match via {
                Via::Cli => {
                    env.ok(&["lease", "release", &lease.to_string()]).await;
                }
                Via::Remote => {
                    let args = ["lease", "release", &lease.to_string()];
                    succeed(remote(&env, &api, &args)).await;
                }
                Via::Api => api::release(&client, &api, lease).await,
            }
            wait(&store, lease, LeaseStatus::Destroyed).await;
            releases.push(started.elapsed());
        }
        let path = match via {
            Via::Cli => "CLI (another process)",
            Via::Remote => "CLI through the API (`--server`)",
            Via::Api => "HTTP API (the daemon's process)",
        };
        row(&format!("{backend}, {path}: request → active"), requests);
        row(&format!("{backend}, {path}: release → destroyed"), releases);
    }
}

/// A working-copy lease on a warm copy (cloned by an earlier lease, idle and clean), requested
/// by the CLI on SQLite: request → active covers the fetch, checkout and clean on the host; release
/// → destroyed the clean.
async fn working_copy() {
    let world = tempfile::tempdir().unwrap();
    let (origin, hosts) = (world.path().join("origin"), world.path().join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    drydock_tests::git::repository(&origin);
    let env = Env::new();
    env.add_working_copies(&hosts, &[&origin]).await;
    let _daemon = env.serve(&["--poll", "250ms"]);
    let store = env.store().await;
    let repository = format!("repository={}", origin.display());
    let attributes = ["--attr", repository.as_str(), "--attr", "ref=main"];
    let (mut requests, mut releases) = (Vec::new(), Vec::new());
    for trial in 0..=TRIALS {
        idle().await;
        let started = Instant::now();
        let lease = env.request_one("working-copy", &attributes).await;
        wait(&store, lease, LeaseStatus::Active).await;
        let requested = started.elapsed();
        idle().await;
        let started = Instant::now();
        env.ok(&["lease", "release", &lease.to_string()]).await;
        wait(&store, lease, LeaseStatus::Destroyed).await;
        if trial > 0 {
            // The first trial clones: it warms the copy.
            requests.push(requested);
            releases.push(started.elapsed());
        }
    }
    row(
        "SQLite, CLI: working-copy request → active, warm copy",
        requests,
    );
    row(
        "SQLite, CLI: working-copy release → destroyed (cleaned)",
        releases,
    );
}

/// `drydock exec --lease L -- echo ready` on an active host lease, from the process's start to
/// the first byte of the command's output: on the database's machine (the CLI runs it) and
/// through the API (the daemon runs it and streams it back), on SQLite.
async fn exec() {
    use tokio::io::AsyncReadExt;
    let env = Env::new();
    env.add_host_pool().await;
    std::fs::create_dir_all("/tmp/drydock").unwrap();
    let mut daemon = env.serve(&[]);
    let server = daemon.url().await;
    let store = env.store().await;
    let lease = env.request_one("host", &[]).await;
    wait(&store, lease, LeaseStatus::Active).await;
    let lease = lease.to_string();
    let args = ["exec", "--lease", lease.as_str(), "--", "echo", "ready"];
    for (path, through_api) in [
        ("on the database's machine", false),
        ("through the API", true),
    ] {
        let mut samples = Vec::new();
        for _ in 0..TRIALS {
            let mut command = match through_api {
                true => remote(&env, &server, &args),
                false => env.command(&args),
            };
            command.stdout(std::process::Stdio::piped());
            let started = Instant::now();
            let mut child = command.spawn().unwrap();
            let mut first = [0u8; 1];
            let stdout = child.stdout.as_mut().unwrap();
            assert_eq!(stdout.read(&mut first).await.unwrap(), 1, "no output");
            samples.push(started.elapsed());
            assert!(child.wait().await.unwrap().success());
        }
        row(
            &format!("SQLite, `drydock exec` {path}: start → first output byte"),
            samples,
        );
    }
}

/// Lets the daemon go idle (waiting on its poll) before the next trial.
async fn idle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Polls the lease's status every 2 ms until it is `status`.
async fn wait(store: &Arc<dyn Store>, lease: ObjectId, status: LeaseStatus) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lease_get(lease).await.unwrap().status != status {
        assert!(Instant::now() < deadline, "{lease} never became {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn row(what: &str, mut samples: Vec<Duration>) {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "| {what} | {} | {} | {} |",
        ms(quantile(&mut samples, 0.5)),
        ms(quantile(&mut samples, 0.9)),
        ms(quantile(&mut samples, 1.0))
    );
}
