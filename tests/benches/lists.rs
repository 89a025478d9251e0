//! Lists with 100,000 leases in the database: the first page of `/leases` and
//! `/api/v1/leases`, filtered pages, a deep page, the console and `/metrics`, each answered by
//! a real `drydock serve` on SQLite (workers off, so the figures are the web server's alone).
//! Printed as Markdown for BENCHMARKS.md.
//!
//! Run: `cargo bench -p drydock-tests --bench lists`.

use drydock_host::domain::LeaseStatus;
use drydock_host::scheduler::Load;
use drydock_host::store::{NewLease, Plan, Write};
use drydock_tests::Env;
use drydock_tests::measure::quantile;
use std::time::{Duration, Instant};

const LEASES: usize = 100_000;
const FAILED: i64 = 1_000;
const TRIALS: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = Env::new();
    let store = env.store().await;
    let began = Instant::now();
    for batch in 0..LEASES / 1000 {
        let new = NewLease {
            resource_type: if batch % 2 == 0 { "host" } else { "copy" }.into(),
            owner: format!("cli:user{}", batch % 10),
            ..NewLease::default()
        };
        store.lease_insert(&new, 1000).await.unwrap();
    }
    // Some failures, spread over the history.
    let claims = store
        .work_item_claim("bench", FAILED, Duration::from_secs(600), &Load::default())
        .await
        .unwrap();
    for claim in &claims {
        let mut plan = Plan::new();
        plan.push(Write::LeaseStatus {
            lease: claim.object,
            status: LeaseStatus::Broken,
        })
        .push(Write::broke(claim.object, "no blueprint makes it"))
        .push(Write::ReleaseClaim { wake_at: None });
        store
            .apply(claim, &plan, Duration::from_secs(600))
            .await
            .unwrap();
    }
    eprintln!(
        "{LEASES} leases ({FAILED} failed) written in {:.1?}",
        began.elapsed()
    );

    let mut daemon = env.serve(&["--workers", "0", "--public-reads"]);
    let base = daemon.url().await;
    let client = reqwest::Client::new();
    println!(
        "| GET, {LEASES} leases ({TRIALS} trials each) | p50 | p90 | max | body |\n|---|---|---|---|---|"
    );
    for path in [
        "/leases",
        "/api/v1/leases",
        "/leases?failed=true",
        "/api/v1/leases?owner=cli:user4&type=host",
        "/api/v1/leases?status=pending&before=L50000",
        "/api/v1/leases?limit=1000",
        "/",
        "/metrics",
    ] {
        let mut samples = Vec::with_capacity(TRIALS);
        let mut size = 0;
        for _ in 0..TRIALS {
            let began = Instant::now();
            let request = client
                .get(format!("{base}{path}"))
                .bearer_auth(drydock_tests::TOKEN);
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            size = response.bytes().await.unwrap().len();
            samples.push(began.elapsed());
        }
        println!(
            "| `{path}` | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} KB |",
            ms(quantile(&mut samples, 0.5)),
            ms(quantile(&mut samples, 0.9)),
            ms(quantile(&mut samples, 1.0)),
            size as f64 / 1024.0
        );
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
