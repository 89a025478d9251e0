//! `blueprint update` never loses a change: a new component and a new config sent at the same
//! moment (as two `drydock blueprint update` processes would) both land, and so do two grants
//! (or two revocations) made at once, on SQLite and on PostgreSQL.

use drydock_host::ops;
use drydock_host::plugin::{Runtime, RuntimeConfig, digest};
use drydock_host::store::Store;
use drydock_tests::postgres::Cluster;
use drydock_tests::{Env, HOST_POOL_GRANT, HOST_POOL_WASM, component_cache};
use std::sync::Arc;

/// Pairs of updates raced.
const PAIRS: usize = 100;

/// `wasm` with a custom section named `drydock-test` holding `mark` appended: a component with
/// a digest of its own that behaves exactly as `wasm` does.
fn marked(wasm: &[u8], mark: u8) -> Vec<u8> {
    const NAME: &[u8] = b"drydock-test";
    let mut component = wasm.to_vec();
    // Section id 0 (custom), its size, then the name (length-prefixed) and the payload; every
    // length fits in one LEB128 byte.
    component.extend([0, (1 + NAME.len() + 1) as u8, NAME.len() as u8]);
    component.extend(NAME);
    component.push(mark);
    component
}

/// A host-pool config whose one host is named `name`.
fn config(name: &str) -> String {
    format!(
        r#"{{"hosts": [{{"name": "{name}", "interface": {{"type": "local", "root": "/tmp/drydock"}}}}]}}"#
    )
}

/// Races `PAIRS` pairs of updates of one blueprint, a new component against a new config, each
/// reading the blueprint first as the CLI does; after each pair both changes must be there.
async fn a_component_and_a_config_sent_together_both_land(store: Arc<dyn Store>) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(component_cache().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let wasm = std::fs::read(HOST_POOL_WASM).unwrap();
    let components = [marked(&wasm, 0), marked(&wasm, 1)];
    let request = ops::BlueprintRequest {
        name: "pool".into(),
        wasm: components[1].clone(),
        config: config("first"),
        grants: vec![HOST_POOL_GRANT.into()],
    };
    let added = ops::add_blueprint(store.as_ref(), &runtime, request)
        .await
        .unwrap();
    let mut lost = Vec::new();
    for pair in 0..PAIRS {
        let wasm = components[pair % 2].clone();
        let config = config(&format!("host-{pair}"));
        let update = |change: (Option<Vec<u8>>, Option<String>)| {
            let (store, runtime) = (store.clone(), runtime.clone());
            tokio::spawn(async move {
                let current = ops::find_blueprint(store.as_ref(), "pool").await?;
                ops::update_blueprint(store.as_ref(), &runtime, &current, change, "test").await
            })
        };
        let component = update((Some(wasm.clone()), None));
        let configured = update((None, Some(config.clone())));
        component.await.unwrap().unwrap();
        configured.await.unwrap().unwrap();
        let now = store.blueprint_get(added.id).await.unwrap();
        if now.component != digest(&wasm) {
            lost.push(format!("pair {pair}: the component"));
        }
        if now.config != config {
            lost.push(format!("pair {pair}: the config"));
        }
    }
    assert_eq!(lost, Vec::<String>::new(), "changes lost");
    let updates = store
        .log_list(Some(added.id), 0, i64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.kind == "blueprint.updated")
        .count();
    assert_eq!(updates, 2 * PAIRS, "each update is applied once");
}

/// Races `PAIRS` pairs of grant changes on one blueprint, each reading the blueprint first as
/// the CLI does: two directories granted at once, then both revoked at once; after each pair
/// both changes must be there.
async fn two_grant_changes_made_together_both_land(store: Arc<dyn Store>) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(component_cache().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let request = ops::BlueprintRequest {
        name: "pool".into(),
        wasm: std::fs::read(HOST_POOL_WASM).unwrap(),
        config: config("first"),
        grants: vec![HOST_POOL_GRANT.into()],
    };
    let added = ops::add_blueprint(store.as_ref(), &runtime, request)
        .await
        .unwrap();
    let change = |grant: Vec<String>, revoke: Vec<String>| {
        let store = store.clone();
        tokio::spawn(async move {
            let current = ops::find_blueprint(store.as_ref(), "pool").await?;
            ops::change_grants(store.as_ref(), &current, &grant, &revoke, "test").await
        })
    };
    let mut lost = Vec::new();
    for pair in 0..PAIRS {
        let dirs = [format!("local:/srv/a{pair}"), format!("local:/srv/b{pair}")];
        let granted = dirs.clone().map(|dir| change(vec![dir], Vec::new()));
        for task in granted {
            task.await.unwrap().unwrap();
        }
        let grants = store.blueprint_get(added.id).await.unwrap().grants;
        let held: Vec<String> = grants.iter().map(ToString::to_string).collect();
        if !dirs.iter().all(|dir| held.contains(dir)) {
            lost.push(format!("pair {pair}: a grant ({held:?})"));
        }
        let revoked = dirs.clone().map(|dir| change(Vec::new(), vec![dir]));
        for task in revoked {
            task.await.unwrap().unwrap();
        }
        let grants = store.blueprint_get(added.id).await.unwrap().grants;
        if grants.len() != 1 {
            lost.push(format!("pair {pair}: a revocation ({grants:?})"));
        }
    }
    assert_eq!(lost, Vec::<String>::new(), "grant changes lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_and_a_config_sent_together_both_land_on_sqlite() {
    let env = Env::new();
    let store = env.store().await;
    a_component_and_a_config_sent_together_both_land(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_and_a_config_sent_together_both_land_on_postgres() {
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    a_component_and_a_config_sent_together_both_land(env.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_grant_changes_made_together_both_land_on_sqlite() {
    two_grant_changes_made_together_both_land(Env::new().store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_grant_changes_made_together_both_land_on_postgres() {
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    two_grant_changes_made_together_both_land(env.store().await).await;
}
