//! A healthy lease beside four hostile blueprints, printed as Markdown for BENCHMARKS.md.
//!
//! One `drydock serve` (defaults: 64 workers, 1 s calls) with host-pool and four blueprints of
//! the misbehaving test component: a sleeper (every allocation sleeps in a blocking WASI call),
//! a `yield(0)` loop, a runaway allocator (each resource leases another of its own type) and a
//! lock thief (takes host-pool's lock name). Eight leases of each are requested at once and four
//! more every two seconds; meanwhile, every half second for twenty seconds, a healthy `host`
//! lease is requested through the HTTP API and the time from request to active is measured
//! (the store polled every 2 ms), with the daemon's peak and final memory.
//!
//! Run: `cargo bench -p drydock-tests --bench hostile`

use drydock_host::domain::LeaseStatus;
use drydock_host::store::ObjectId;
use drydock_tests::{Env, MISBEHAVE_WASM, TOKEN};
use std::time::{Duration, Instant};

const TRIALS: usize = 40;
const SPACING: Duration = Duration::from_millis(500);
const HOSTILE: [(&str, &str); 4] = [
    ("sleeper", "sleep"),
    ("yielder", "yield0"),
    ("runaway", "runaway"),
    ("thief", "lock-thief"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = Env::new();
    env.add_host_pool().await;
    for (name, mode) in HOSTILE {
        let config = format!(r#"{{"mode": "{mode}"}}"#);
        // Each authorized to lease from itself: the fan-out meets the host's limits alone.
        let uses = format!("use:{name}");
        env.add_blueprint(name, MISBEHAVE_WASM, &config, &[&uses])
            .await;
    }
    let mut daemon = env.serve(&[]);
    let api = daemon.url().await;
    let client = reqwest::Client::new();
    let store = env.store().await;

    let hostile = |count: u32| {
        let env = &env;
        async move {
            for (name, _) in HOSTILE {
                let count = count.to_string();
                env.ok(&[
                    "lease",
                    "request",
                    "--type",
                    "trouble",
                    "--blueprint",
                    name,
                    "--count",
                    &count,
                ])
                .await;
            }
        }
    };
    let run = Instant::now();
    hostile(8).await;
    let mut samples = Vec::with_capacity(TRIALS);
    let mut last_wave = Instant::now();
    for _ in 0..TRIALS {
        if last_wave.elapsed() > Duration::from_secs(2) {
            hostile(4).await;
            last_wave = Instant::now();
        }
        let started = Instant::now();
        let body: serde_json::Value = client
            .post(format!("{api}/api/v1/leases"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"type": "host"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id: ObjectId = body[0]["id"].as_str().unwrap().parse().unwrap();
        while store.lease_get(id).await.unwrap().status != LeaseStatus::Active {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(started.elapsed());
        client
            .post(format!("{api}/api/v1/leases/{id}/release"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(SPACING).await;
    }
    let first = samples[0];
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let memory = |field: &str| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap() / 1024)
            .unwrap()
    };
    let resources = store.resource_list(None).await.unwrap();
    let failing: Vec<String> = store
        .blueprint_list()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.is_failing())
        .map(|b| b.name)
        .collect();
    println!("| measurement | result |\n|---|---|");
    println!(
        "| healthy `host` lease, request (API) → active, beside 4 hostile blueprints ({TRIALS} trials) | first (makes the host's resource) {:.0} ms; p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms |",
        ms(first),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*samples.last().unwrap())
    );
    println!(
        "| daemon memory during the run | peak {} MiB, at the end {} MiB |",
        memory("VmHWM:"),
        memory("VmRSS:")
    );
    println!(
        "| resources the hostile blueprints made in the {:.0} s run | {} (deepest at depth {}); blueprints shown failing: {} |",
        run.elapsed().as_secs_f64(),
        resources
            .iter()
            .filter(|r| r.resource_type == "trouble")
            .count(),
        resources.iter().map(|r| r.depth).max().unwrap_or(0),
        failing.join(", ")
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
