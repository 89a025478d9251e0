//! Fair share end to end: a blueprint's limits hold against hostile components in the daemon
//! (a fan-out, a log flood, an exec that yields at every call), an owner's waiting leases are
//! capped at the request, and a healthy `host` lease is served meanwhile. Each refusal is
//! visible where the issue says: on the object, in the error, in `/metrics`.

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{ObjectId, Resource, StepRecord, Store};
use drydock_tests::{
    Env, MISBEHAVE_WASM, TOKEN, USE_HOST_POOL, steps_are_a_second_apart, wait_for, wait_lease,
};
use std::sync::Arc;
use std::time::Instant;

/// A database with host-pool and misbehave in `mode`, authorized to lease from itself and from
/// host-pool, with `limits` set on misbehave (`KEY=VALUE`).
async fn env_with(mode: &str, limits: &[&str]) -> Env {
    let env = Env::new();
    env.add_host_pool().await;
    let config = format!(r#"{{"mode": "{mode}"}}"#);
    env.add_blueprint(
        "misbehave",
        MISBEHAVE_WASM,
        &config,
        &["use:misbehave", USE_HOST_POOL],
    )
    .await;
    if !limits.is_empty() {
        let mut args = vec!["blueprint", "limit", "misbehave"];
        args.extend_from_slice(limits);
        env.ok(&args).await;
    }
    env
}

/// A healthy host lease goes active while the hostile ones are in flight.
async fn healthy_lease_is_served(env: &Env, store: &Arc<dyn Store>) {
    let healthy = env.request_one("host", &[]).await;
    wait_lease(store, healthy, LeaseStatus::Active).await;
}

/// The value of one series of the daemon's `/metrics`, 0 if it is not there yet.
async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(drydock_tests::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The first resource of misbehave's type.
async fn trouble_resource(store: &Arc<dyn Store>) -> ObjectId {
    wait_for("misbehave to make a resource", || async {
        let resources = store.resource_list(None).await.unwrap();
        resources
            .into_iter()
            .find(|r| r.resource_type == "trouble")
            .map(|r| r.id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_meets_its_blueprints_limits_in_total() {
    let env = env_with("fan-out", &["setting-up=3", "pending-supporting=12"]).await;
    let store = env.store().await;
    let mut daemon = env.serve(&[]);
    let base = daemon.url().await;
    env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    let series =
        r#"drydock_limit_refusals_total{blueprint="misbehave",limit="pending-supporting"}"#;
    wait_for("the fan-out to meet its limits a few times", || async {
        let resources = store.resource_list(None).await.unwrap();
        let setting_up = resources
            .iter()
            .filter(|r| r.resource_type == "trouble" && r.status == ResourceStatus::Pending)
            .count();
        assert!(setting_up <= 3, "{setting_up} resources being set up");
        let leases = store.lease_list(Some(LeaseStatus::Pending)).await.unwrap();
        let waiting = leases
            .iter()
            .filter(|l| l.parent_resource_id.is_some())
            .count();
        assert!(waiting <= 12, "{waiting} supporting leases waiting");
        (metric(&base, series).await >= 3.0).then_some(())
    })
    .await;
    // The resources put off say why, where an operator looks.
    let put_off = store
        .resource_list(Some(ResourceStatus::Pending))
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for resource in put_off.iter().filter(|r| r.resource_type == "trouble") {
        let work = store.work_item_get(resource.id).await.unwrap();
        reasons.extend(work.last_error);
    }
    assert!(
        reasons.iter().any(
            |r| r.contains("misbehave's resources have") && r.contains("pending-supporting=12")
        ),
        "{reasons:?}"
    );
    healthy_lease_is_served(&env, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_kept_to_its_quota_and_says_so() {
    let limits = ["log-per-minute=64K", "step-history-per-minute=64K"];
    let env = env_with("log-flood", &limits).await;
    let store = env.store().await;
    let started = Instant::now();
    let mut daemon = env.serve(&[]);
    let base = daemon.url().await;
    env.request_one("trouble", &[]).await;
    let flooding = trouble_resource(&store).await;
    healthy_lease_is_served(&env, &store).await;
    let said = wait_for("the flood's log to be refused", || async {
        let logs = store.log_list(Some(flooding), 0, 10_000).await.unwrap();
        logs.into_iter()
            .find(|l| l.kind == "resource.log-refused")
            .map(|l| l.message)
    })
    .await;
    assert!(
        said.contains(
            "from misbehave were not kept: it is over its log-per-minute quota of 64K \
             (`drydock blueprint limit misbehave log-per-minute=…` raises it)"
        ),
        "{said}"
    );
    let steps = store.step_list(flooding, 0, 1000).await.unwrap();
    assert!(
        steps.iter().any(|s| s.step.is_none()
            && s.verdict
                .contains("were not kept: misbehave is over its step-history-per-minute")),
        "{steps:?}"
    );
    // What is kept stays within a minute's worth per minute, and the metrics count the rest.
    let kept = store.blueprint_by_name("misbehave").await.unwrap();
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let allowed = (64 << 10) as f64 * (1.0 + minutes);
    assert!(
        (kept.log_bytes as f64) <= allowed && (kept.step_bytes as f64) <= allowed,
        "{} log and {} step bytes kept in {minutes:.2} minutes",
        kept.log_bytes,
        kept.step_bytes
    );
    let series = r#"drydock_limit_refusals_total{blueprint="misbehave",limit="log-per-minute"}"#;
    assert!(metric(&base, series).await >= 1.0);
    // The daemon adds up what was kept every second; /metrics shows it.
    let series = r#"drydock_blueprint_kept_bytes{blueprint="misbehave",what="log"}"#;
    wait_for("the kept bytes in /metrics", || async {
        (metric(&base, series).await > 0.0).then_some(())
    })
    .await;
    let out = env.ok(&["blueprint", "show", "misbehave"]).await;
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["log-per-minute", "64K"])),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_rounds_are_at_least_the_minimum_yield_apart() {
    let env = env_with("exec-yield", &[]).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    env.request_one("trouble", &[]).await;
    let spinning = trouble_resource(&store).await;
    healthy_lease_is_served(&env, &store).await;
    // The steps that ran an exec (the first ones waited for the host, and its lease becoming
    // active woke the resource early).
    let ran_an_exec = |s: &StepRecord| s.step.as_deref().is_some_and(|b| b.contains("\"exec\""));
    steps_are_a_second_apart(&store, spinning, "exec rounds", ran_an_exec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_an_owners_waiting_leases_is_refused_naming_the_limit() {
    let env = Env::new();
    env.add_host_pool().await;
    env.ok(&["blueprint", "limit", "host-pool", "pending-per-owner=2"])
        .await;
    env.request("host", &["--count", "2"]).await;
    let out = env.drydock(&["lease", "request", "--type", "host"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cli:tester has 2 \"host\" leases waiting to become active; 1 more would pass \
             host-pool's limit of 2 per owner (pending-per-owner)"
        ),
        "{stderr}"
    );
    // Another owner has a share of their own.
    env.ok_as("alice", &["lease", "request", "--type", "host"])
        .await;
    // Through the API (a daemon serving HTTP only, so nothing becomes active): 429.
    let mut daemon = env.serve(&["--workers", "0"]);
    let base = daemon.url().await;
    let request = || {
        reqwest::Client::new()
            .post(format!("{base}/api/v1/leases"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"type": "host", "count": 2}))
            .send()
    };
    assert_eq!(request().await.unwrap().status(), 201);
    let refused = request().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("host-pool's limit of 2 per owner"),
        "{body}"
    );
    let series = r#"drydock_limit_refusals_total{blueprint="host-pool",limit="pending-per-owner"}"#;
    assert_eq!(
        metric(&base, series).await,
        1.0,
        "the daemon counts its own"
    );
}

/// `fan-out` misbehave blueprints `names`, each asking for `fan_out` supporting leases of
/// type `trouble` per resource and authorized to lease from all of them (so their leases
/// cross: a cycle between blueprints), beside host-pool.
async fn fan_outs(names: &[&str], fan_out: usize) -> Env {
    let env = Env::new();
    env.add_host_pool().await;
    let config = format!(r#"{{"mode": "fan-out", "fan_out": {fan_out}}}"#);
    for name in names {
        let uses = format!("use:{name}");
        env.add_blueprint(name, MISBEHAVE_WASM, &config, &[&uses])
            .await;
    }
    for (name, other) in names.iter().flat_map(|a| names.iter().map(move |b| (a, b))) {
        if name != other {
            env.ok(&["blueprint", "authorize", name, "--use", other])
                .await;
        }
    }
    env
}

/// Waits until every `trouble` lease and resource has ended (destroyed), then returns the
/// resources made.
async fn all_ended(store: &Arc<dyn Store>) -> Vec<Resource> {
    wait_for("every trouble lease and resource to end", || async {
        let leases = store.lease_list(None).await.unwrap();
        let resources = store.resource_list(None).await.unwrap();
        let trouble: Vec<Resource> = resources
            .into_iter()
            .filter(|r| r.resource_type == "trouble")
            .collect();
        let live = leases
            .iter()
            .any(|l| l.resource_type == "trouble" && l.status != LeaseStatus::Destroyed)
            || trouble
                .iter()
                .any(|r| r.status != ResourceStatus::Destroyed);
        (!live).then_some(trouble)
    })
    .await
}

/// The resources whose own step was refused for `why` (not those that broke because one
/// beneath them was).
fn refused_for<'a>(resources: &'a [Resource], why: &str) -> Vec<&'a Resource> {
    resources
        .iter()
        .filter(|r| {
            r.end
                .as_ref()
                .and_then(|end| end.detail.as_deref())
                .is_some_and(|detail| {
                    detail.starts_with("activate-resource returned an invalid step")
                        && detail.contains(why)
                })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_stops_at_the_depth_limit_with_one_resource_per_level() {
    let env = fan_outs(&["misbehave"], 1).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let root = env.request_one("trouble", &[]).await;
    let made = all_ended(&store).await;
    // Depths 0 to 4; the deepest asked for one more and was refused, and its lease did not
    // try another resource (which would be refused the same).
    assert_eq!(made.len(), 5, "{made:#?}");
    let mut depths: Vec<u32> = made.iter().map(|r| r.depth).collect();
    depths.sort();
    assert_eq!(depths, [0, 1, 2, 3, 4]);
    assert_eq!(refused_for(&made, "nest at most 4 deep").len(), 1);
    let refused = store.lease_list(None).await.unwrap();
    let deepest = refused.iter().find(|l| l.depth == 4).unwrap();
    let logs = store.log_list(Some(deepest.id), 0, 1000).await.unwrap();
    assert!(
        logs.iter().any(|l| l
            .message
            .contains("another resource would meet the same refusal")),
        "{logs:#?}"
    );
    assert!(store.lease_get(root).await.unwrap().end.is_some());
    healthy_lease_is_served(&env, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_between_two_blueprints_stays_within_its_tree() {
    let env = fan_outs(&["cycle-a", "cycle-b"], 2).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    env.request_one("trouble", &[]).await;
    healthy_lease_is_served(&env, &store).await;
    let made = all_ended(&store).await;
    // A binary tree 4 deep, at most: 1 + 2 + 4 + 8 + 16.
    assert!(made.len() <= 31, "{} resources", made.len());
    assert!(made.iter().all(|r| r.depth <= 4));
    let blueprints: std::collections::BTreeSet<ObjectId> =
        made.iter().map(|r| r.blueprint_id).collect();
    assert_eq!(
        blueprints.len(),
        2,
        "the leases crossed between the blueprints"
    );
    assert!(!refused_for(&made, "nest at most 4 deep").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_asking_for_more_supporting_leases_than_allowed_makes_one_resource() {
    let env = fan_outs(&["misbehave"], 9).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    let lease = env.request_one("trouble", &[]).await;
    let made = all_ended(&store).await;
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(refused_for(&made, "at most 8 supporting leases").len(), 1);
    let end = store.lease_get(lease).await.unwrap().end.unwrap();
    let detail = end.detail.unwrap_or_default();
    assert!(
        detail.contains("at most 8 supporting leases")
            && detail.contains("another resource would meet the same refusal"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_fan_outs_at_once_keep_their_limits_and_a_healthy_lease_is_served() {
    let names = ["fan-1", "fan-2", "fan-3", "fan-4", "fan-5"];
    let env = fan_outs(&names, 8).await;
    let store = env.store().await;
    let _daemon = env.serve(&[]);
    for _ in &names {
        env.request_one("trouble", &[]).await;
    }
    wait_for("every fan-out to make resources", || async {
        let resources = store.resource_list(None).await.unwrap();
        let making: std::collections::BTreeSet<ObjectId> = resources
            .iter()
            .filter(|r| r.resource_type == "trouble")
            .map(|r| r.blueprint_id)
            .collect();
        (making.len() == names.len()).then_some(())
    })
    .await;
    for _ in 0..5 {
        // More of the hostile load (a fan-out collapses once a leaf meets the depth limit).
        env.request("trouble", &["--count", "5"]).await;
        healthy_lease_is_served(&env, &store).await;
        let resources = store.resource_list(None).await.unwrap();
        for name in names {
            let blueprint = store.blueprint_by_name(name).await.unwrap().id;
            let setting_up = resources
                .iter()
                .filter(|r| r.blueprint_id == blueprint && r.status == ResourceStatus::Pending)
                .count();
            assert!(
                setting_up <= 16,
                "{name} has {setting_up} resources being set up"
            );
        }
    }
}
