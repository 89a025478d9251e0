//! Makes the upgrade fixtures of this build: `cargo run -p drydock-tests --bin upgrade-fixtures
//! -- LABEL` writes `tests/fixtures/upgrade/LABEL/` (name it for the release, such as
//! `0.1.0-4460723`): a SQLite database and a PostgreSQL dump that this build's daemon and CLI
//! filled (`drydock_tests::upgrade::populate`), each with a manifest of what it holds and which
//! lease is which. `tests/tests/upgrade.rs` opens every fixture there with the newer build
//! under test. `DRYDOCK_BINARY` names the `drydock` that makes them (`cargo build -p
//! drydock-host` first: the binary is not found from here).

use drydock_tests::postgres::Cluster;
use drydock_tests::upgrade::{Populated, fixtures, populate, snapshot};
use drydock_tests::{Env, drydock_binary};
use serde_json::{Value, json};
use std::path::Path;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let label = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: upgrade-fixtures LABEL (such as 0.1.0-4460723)"))?;
    let out = fixtures().join(&label);
    anyhow::ensure!(!out.exists(), "{} exists already", out.display());
    std::fs::create_dir_all(&out)?;
    anyhow::ensure!(
        std::env::var_os("DRYDOCK_BINARY").is_some(),
        "DRYDOCK_BINARY must name the drydock that makes the fixtures"
    );
    eprintln!("making the fixtures with {}", drydock_binary()?.display());

    let env = Env::new();
    let populated = populate(&env, "sqlite").await;
    let store = env.store().await;
    manifest(&out.join("sqlite.json"), &populated, snapshot(&store).await)?;
    // One file, without its write-ahead log: what `VACUUM INTO` writes.
    let copy = out.join("sqlite.db").display().to_string();
    drydock_tests::sqlite(&env.url).execute_batch(&format!("VACUUM INTO '{copy}'"))?;

    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    let populated = populate(&env, "postgres").await;
    let store = env.store().await;
    let at = out.join("postgres.json");
    manifest(&at, &populated, snapshot(&store).await)?;
    cluster.dump(&env.url, &out.join("postgres.sql"));
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Writes what the fixture holds (`snapshot`) and which lease is which to `at`.
fn manifest(at: &Path, populated: &Populated, snapshot: Value) -> anyhow::Result<()> {
    let manifest = json!({
        "released_later": populated.released_later.to_string(),
        "working_copy": populated.working_copy.to_string(),
        "pending": populated.pending.to_string(),
        "snapshot": snapshot,
    });
    std::fs::write(at, serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(())
}
