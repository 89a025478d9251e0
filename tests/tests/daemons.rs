//! The registry of daemons: each keeps its row while it runs and removes it when it stops, so
//! `drydock daemon list` shows who serves the database, and `lease request --wait` on
//! PostgreSQL (where no wake-up socket tells) says when none does.

use drydock_tests::postgres::Cluster;
use drydock_tests::{Env, wait_for};
use serde_json::Value;

/// `drydock daemon list --json`.
async fn daemons(env: &Env) -> Vec<Value> {
    let listed = env.ok(&["daemon", "list", "--json"]).await;
    serde_json::from_str::<Value>(&listed)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_are_listed_while_they_serve_and_a_wait_says_when_none_does() {
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    env.add_host_pool().await;
    let wait = [
        "lease",
        "request",
        "--type",
        "host",
        "--wait",
        "--timeout",
        "1s",
    ];
    let alone = env.drydock(&wait).await;
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: no daemon is serving this database"),
        "{stderr}"
    );

    let daemon = env.serve(&[]);
    let serving = wait_for("the daemon to be listed", || async {
        let listed = daemons(&env).await;
        (listed.len() == 1).then_some(listed)
    })
    .await;
    assert_eq!(serving[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        serving[0]["name"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", daemon.pid()))
    );
    let table = env.ok(&["daemon", "list"]).await;
    assert!(table.contains("serving"), "{table}");
    let served = env.drydock(&wait[..5]).await;
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(served.status.success(), "{stderr}");
    assert!(!stderr.contains("no daemon"), "{stderr}");

    assert!(daemon.terminate().await, "the daemon stopped cleanly");
    assert!(
        daemons(&env).await.is_empty(),
        "a stopped daemon is still listed"
    );
}
