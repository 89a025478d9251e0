//! Databases made by earlier releases (`tests/fixtures/upgrade/*`, made with the
//! `upgrade-fixtures` binary) upgrade in place: after `drydock migrate`, every blueprint (with its
//! grants and authorizations), resource, lease, command, slot lock, log entry and step is still
//! there as it was, and a daemon of this build serves them: it applies the release queued while
//! no daemon ran, leases the pending lease, and keeps the working copy and its supporting lease.
//! A PostgreSQL history numbered before both backends shared one line is renumbered.

use drydock_host::domain::LeaseStatus;
use drydock_host::store::{ObjectId, Store};
use drydock_tests::postgres::Cluster;
use drydock_tests::upgrade::{fixtures, root, snapshot, survives};
use drydock_tests::{Env, wait_commands_consumed, wait_lease};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_databases_of_earlier_releases_upgrade_in_place() {
    for fixture in every_fixture() {
        let env = Env::new();
        std::fs::copy(fixture.join("sqlite.db"), env.dir().join("drydock.db")).unwrap();
        upgrades_and_serves(&env, &fixture, "sqlite").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_databases_of_earlier_releases_upgrade_in_place() {
    let cluster = Cluster::start();
    for fixture in every_fixture() {
        let env = Env::with_url(cluster.database_from(&fixture.join("postgres.sql")).await);
        upgrades_and_serves(&env, &fixture, "postgres").await;
        history_on_the_one_line(&env.url).await;
    }
}

/// The database's migration history now reads as this build numbers it (a history from before
/// the backends shared one line of numbers is renumbered by the upgrade).
async fn history_on_the_one_line(url: &str) {
    let db = sqlx::PgPool::connect(url).await.unwrap();
    let recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db)
            .await
            .unwrap();
    let line: Vec<(i64, String)> = sqlx::migrate!("../host/migrations/postgres")
        .iter()
        .map(|m| (m.version, m.description.to_string()))
        .collect();
    assert_eq!(recorded, line);
}

/// Every fixture directory, oldest release first; there is at least one.
fn every_fixture() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    all.sort();
    assert!(!all.is_empty(), "no fixture in {}", fixtures().display());
    all
}

async fn upgrades_and_serves(env: &Env, fixture: &Path, backend: &str) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixture.join(format!("{backend}.json"))).unwrap())
            .unwrap();
    env.ok(&["migrate"]).await;
    let store = env.store().await;
    if let Err(lost) = survives(&manifest["snapshot"], &snapshot(&store).await) {
        panic!("{}: {backend}: {lost}", fixture.display());
    }
    // What the fixture's host-pool hands out and lets its execs read.
    for dir in ["hosts", "repositories"] {
        std::fs::create_dir_all(root(backend).join(dir)).unwrap();
    }
    let lease = |key: &str| -> ObjectId { manifest[key].as_str().unwrap().parse().unwrap() };
    let _daemon = env.serve(&[]);
    wait_lease(&store, lease("released_later"), LeaseStatus::Destroyed).await;
    wait_lease(&store, lease("pending"), LeaseStatus::Active).await;
    wait_commands_consumed(&store).await;
    working_copy_stands(&store, lease("working_copy")).await;
    env.ok(&["lease", "release", &lease("pending").to_string()])
        .await;
    wait_lease(&store, lease("pending"), LeaseStatus::Destroyed).await;
}

/// The working copy is still leased, on its resource, over its active supporting lease.
async fn working_copy_stands(store: &Arc<dyn Store>, lease: ObjectId) {
    let lease = store.lease_get(lease).await.unwrap();
    assert_eq!(lease.status, LeaseStatus::Active, "{lease:#?}");
    let copy = lease.resource_id.unwrap();
    let supporting = store.lease_list_supporting(copy).await.unwrap();
    assert!(
        supporting.len() == 1 && supporting[0].status == LeaseStatus::Active,
        "{supporting:#?}"
    );
}
