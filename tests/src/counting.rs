//! Counting what the counting blueprint (`COUNTING_WASM`, type `counted`) did: how many times
//! its release and destroy logic was applied, how commands ended. Shared by the daemon tests on
//! SQLite and on PostgreSQL.

use crate::{Env, wait_for};
use drydock_host::domain::LeaseStatus;
use drydock_host::store::{Command, CommandFilter, EndKind, ObjectId, Store};
use std::sync::Arc;

/// The line `release-lease` logs each time its logic is applied.
pub const RELEASE_LINE: &str = "release logic ran";
/// The line `destroy-resource` logs each time its logic is applied.
pub const DESTROY_LINE: &str = "destroy logic ran";

/// Requests `count` leases and waits until the CLI says they are active.
pub async fn active_leases(env: &Env, count: u32) -> Vec<ObjectId> {
    let count = count.to_string();
    let wait = ["--count", &count, "--wait", "--timeout", "90s"];
    env.request("counted", &wait).await
}

/// The resource an active lease holds.
pub async fn resource_of(store: &Arc<dyn Store>, lease: ObjectId) -> ObjectId {
    store.lease_get(lease).await.unwrap().resource_id.unwrap()
}

/// How many log entries of `object` say `line`.
pub async fn count_logs(store: &Arc<dyn Store>, object: ObjectId, line: &str) -> usize {
    let logs = store.log_list(Some(object), 0, 100_000).await.unwrap();
    logs.iter().filter(|l| l.message == line).count()
}

/// How many log entries of `object` are of `kind` (`lease.destroyed`…).
pub async fn count_kind(store: &Arc<dyn Store>, object: ObjectId, kind: &str) -> usize {
    let logs = store.log_list(Some(object), 0, 100_000).await.unwrap();
    logs.iter().filter(|l| l.kind == kind).count()
}

/// Waits until no command is pending, then returns every command for `target`.
pub async fn settled_commands(store: &Arc<dyn Store>, target: ObjectId) -> Vec<Command> {
    wait_for("every command to be consumed", || async {
        let pending = CommandFilter {
            target: None,
            pending: true,
        };
        store
            .command_list(&pending)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let filter = CommandFilter {
        target: Some(target),
        pending: false,
    };
    store.command_list(&filter).await.unwrap()
}

/// How many of `commands` were applied (the rest were consumed as ignored).
pub fn applied(commands: &[Command]) -> usize {
    commands
        .iter()
        .filter(|c| c.outcome.as_deref() == Some("applied"))
        .count()
}

/// Requests a lease and releases it with the CLI while a daemon polls only once an hour: both
/// go through only if the CLI's posts wake the daemon (another process) at once.
pub async fn the_cli_wakes_an_idle_daemon(env: &Env) {
    let _daemon = env.serve(&["--poll", "1h"]);
    let store = env.store().await;
    let lease = active_leases(env, 1).await[0];
    env.ok(&["lease", "release", &lease.to_string()]).await;
    crate::wait_lease(&store, lease, drydock_host::domain::LeaseStatus::Destroyed).await;
}

/// Checks that every one of `leases` ended as its user asked: destroyed, ended as released
/// (never broken), every command on it applied (none consumed as ignored), and the release
/// logic applied once. What a fault in the host's own store must never change.
pub async fn each_released_once(store: &Arc<dyn Store>, leases: &[ObjectId]) {
    for &lease in leases {
        let commands = settled_commands(store, lease).await;
        assert_eq!(
            applied(&commands),
            commands.len(),
            "{lease}: a command was not applied: {commands:?}"
        );
        let got = store.lease_get(lease).await.unwrap();
        assert_eq!(got.status, LeaseStatus::Destroyed, "{lease}");
        let end = got.end.as_ref().map(|end| end.kind);
        assert_eq!(end, Some(EndKind::Released), "{lease}: {:?}", got.end);
        assert_eq!(count_logs(store, lease, RELEASE_LINE).await, 1, "{lease}");
    }
}
