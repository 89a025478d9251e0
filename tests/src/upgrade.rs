//! Databases made by an earlier Drydock, to upgrade in place: [`populate`] fills one through the
//! CLI and a daemon with objects in every lasting state, [`snapshot`] says what it holds, and
//! [`survives`] checks that a newer build still shows all of it.
//!
//! `cargo run -p drydock-tests --bin upgrade-fixtures` makes a new fixture with this build
//! (`tests/fixtures/upgrade/`); `tests/tests/upgrade.rs` opens every fixture there.

use crate::{Env, git, wait_lease};
use drydock_host::domain::LeaseStatus;
use drydock_host::store::{CommandFilter, ObjectId, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the fixtures are.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade")
}

/// The directory a fixture's host-pool hands out, and its repository lives in, for `backend`
/// (`sqlite` or `postgres`): stored in the fixture's blueprint config and grants, so fixed.
pub fn root(backend: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/drydock-upgrade-{backend}"))
}

/// The leases [`populate`] leaves, by what they are for.
pub struct Populated {
    /// An active `host` lease, with a release queued for it.
    pub released_later: ObjectId,
    /// An active `working-copy` lease (over a supporting `host` lease).
    pub working_copy: ObjectId,
    /// A pending `host` lease no daemon has looked at yet.
    pub pending: ObjectId,
}

/// Registers host-pool and working-copy (authorized to use it) on the host at
/// `root(backend)`, runs a daemon, and leaves: an active host lease; an active working copy
/// with its supporting host lease; a host lease released and destroyed; a lease no blueprint
/// serves, broken; then, with the daemon stopped, a pending lease and a queued release.
pub async fn populate(env: &Env, backend: &str) -> Populated {
    let root = root(backend);
    let _ = std::fs::remove_dir_all(&root);
    let (hosts, repositories) = (root.join("hosts"), root.join("repositories"));
    std::fs::create_dir_all(&hosts).unwrap();
    let repository = repositories.join("app");
    git::repository(&repository);
    env.add_working_copies(&hosts, &[&repositories]).await;
    let store = env.store().await;
    let daemon = env.serve(&[]);
    let active = env.request_one("host", &["--wait"]).await;
    let attribute = format!("repository={}", repository.display());
    let working_copy = env
        .request_one("working-copy", &["--attr", &attribute, "--wait"])
        .await;
    let destroyed = env.request_one("host", &["--wait"]).await;
    env.ok(&["lease", "release", &destroyed.to_string()]).await;
    wait_lease(&store, destroyed, LeaseStatus::Destroyed).await;
    let broken = env.request_one("nothing-makes-this", &[]).await;
    wait_lease(&store, broken, LeaseStatus::Destroyed).await;
    assert!(daemon.terminate().await, "the daemon did not stop cleanly");
    let pending = env.request_one("host", &[]).await;
    env.ok(&["lease", "release", &active.to_string()]).await;
    Populated {
        released_later: active,
        working_copy,
        pending,
    }
}

/// Everything `store` holds that an upgrade must keep: blueprints (with their grants and
/// authorizations), resources, leases, commands, slot locks, and every object's log and steps.
pub async fn snapshot(store: &Arc<dyn Store>) -> Value {
    let all = CommandFilter {
        target: None,
        pending: false,
    };
    let leases = store.lease_list(None).await.unwrap();
    let resources = store.resource_list(None).await.unwrap();
    let mut steps = Vec::new();
    let objects = leases
        .iter()
        .map(|l| l.id)
        .chain(resources.iter().map(|r| r.id));
    for object in objects {
        steps.extend(store.step_list(object, 0, i64::MAX).await.unwrap());
    }
    json!({
        "blueprints": store.blueprint_list().await.unwrap(),
        "resources": resources,
        "leases": leases,
        "commands": store.command_list(&all).await.unwrap(),
        "slot_locks": store.slot_lock_list(None).await.unwrap(),
        "logs": store.log_list(None, 0, i64::MAX).await.unwrap(),
        "steps": steps,
    })
}

/// Whether `now` shows everything `before` did: every field `before` has, with the same value
/// (a newer build may add fields, never lose or change one), and lists of the same length.
/// `Err` names the first difference by its path.
pub fn survives(before: &Value, now: &Value) -> Result<(), String> {
    survives_at("", before, now)
}

fn survives_at(path: &str, before: &Value, now: &Value) -> Result<(), String> {
    match (before, now) {
        (Value::Object(before), Value::Object(now)) => {
            for (key, value) in before {
                let at = format!("{path}.{key}");
                let Some(kept) = now.get(key) else {
                    return Err(format!("{at} is gone"));
                };
                survives_at(&at, value, kept)?;
            }
            Ok(())
        }
        (Value::Array(before), Value::Array(now)) if before.len() == now.len() => before
            .iter()
            .zip(now)
            .enumerate()
            .try_for_each(|(i, (b, n))| survives_at(&format!("{path}[{i}]"), b, n)),
        (Value::Array(before), Value::Array(now)) => Err(format!(
            "{path} held {} entries and now holds {}",
            before.len(),
            now.len()
        )),
        _ if before == now => Ok(()),
        _ => Err(format!("{path} was {before} and is now {now}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_field_survives_and_a_lost_or_changed_one_is_named() {
        let before = json!({"leases": [{"id": "L1", "status": "active"}]});
        let grown = json!({"leases": [{"id": "L1", "status": "active", "new": 1}], "more": []});
        survives(&before, &grown).unwrap();
        let changed = json!({"leases": [{"id": "L1", "status": "pending"}]});
        assert_eq!(
            survives(&before, &changed).unwrap_err(),
            r#".leases[0].status was "active" and is now "pending""#
        );
        let lost = json!({"leases": [{"id": "L1"}]});
        assert_eq!(
            survives(&before, &lost).unwrap_err(),
            ".leases[0].status is gone"
        );
        let shorter = json!({"leases": []});
        assert_eq!(
            survives(&before, &shorter).unwrap_err(),
            ".leases held 1 entries and now holds 0"
        );
    }
}
