//! Counting what the counting blueprint (`COUNTING_WASM`, type `counted`) did: how many times
//! its release and destroy logic was applied, how commands ended. Shared by the daemon tests on
//! SQLite and on PostgreSQL.

use crate::{Env, wait_commands_consumed};
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
    wait_commands_consumed(store).await;
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

/// How a set of leases ended, counted: what a fault in the host's own store must never change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Endings {
    /// Leases destroyed, having ended as released (never broken).
    pub released: usize,
    /// Leases that broke (or were not destroyed).
    pub broken: usize,
    /// Commands consumed as ignored rather than applied.
    pub ignored: usize,
    /// Leases whose release logic ran other than exactly once.
    pub release_logic_not_once: usize,
}

/// Counts how `leases` ended, once every command is consumed.
pub async fn endings(store: &Arc<dyn Store>, leases: &[ObjectId]) -> Endings {
    let mut endings = Endings::default();
    for &lease in leases {
        let commands = settled_commands(store, lease).await;
        endings.ignored += commands.len() - applied(&commands);
        let got = store.lease_get(lease).await.unwrap();
        let released = got.status == LeaseStatus::Destroyed
            && got.end.as_ref().map(|end| end.kind) == Some(EndKind::Released);
        match released {
            true => endings.released += 1,
            false => endings.broken += 1,
        }
        if count_logs(store, lease, RELEASE_LINE).await != 1 {
            endings.release_logic_not_once += 1;
        }
    }
    endings
}

/// Checks that every one of `leases` ended as its user asked: destroyed, ended as released
/// (never broken), every command on it applied (none consumed as ignored), and the release
/// logic applied once.
pub async fn each_released_once(store: &Arc<dyn Store>, leases: &[ObjectId]) {
    let expected = Endings {
        released: leases.len(),
        ..Endings::default()
    };
    assert_eq!(endings(store, leases).await, expected);
}
