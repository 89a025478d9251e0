//! Measurements the benchmarks share across backends: the cost of the queue's three basic
//! operations, and percentiles.

use drydock_host::scheduler::Load;
use drydock_host::store::{CommandKind, ObjectId, Release, Store};
use std::time::{Duration, Instant};

/// Mean cost of one post, one claim and one claim release.
pub struct QueueCost {
    /// `command_post` of a release to one lease.
    pub post: Duration,
    /// `work_item_claim` of the one due object.
    pub claim: Duration,
    /// `work_item_release` of that claim.
    pub release: Duration,
}

/// Times `ops` rounds of post → claim → release on a database that already holds `objects`
/// idle active leases `L1…L{objects}`, each with a work item. The targets are spread over the
/// whole id range, so an unindexed lookup would show as a cost growing with `objects`.
pub async fn queue_cost(store: &dyn Store, objects: usize, ops: usize) -> QueueCost {
    let (mut post, mut claim, mut release) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for i in 0..ops {
        let target = ObjectId::Lease(1 + (i * 7919 % objects) as i64);
        let t = Instant::now();
        store
            .command_post(&[target], CommandKind::Release, "bench")
            .await
            .unwrap();
        post += t.elapsed();
        let t = Instant::now();
        let claims = store
            .work_item_claim("bench", 1, Duration::from_secs(30), &Load::default())
            .await
            .unwrap();
        claim += t.elapsed();
        assert_eq!(claims.len(), 1, "exactly the posted object is due");
        let t = Instant::now();
        store
            .work_item_release(&claims[0], &Release::default())
            .await
            .unwrap();
        release += t.elapsed();
    }
    let mean = |d: Duration| d / ops as u32;
    QueueCost {
        post: mean(post),
        claim: mean(claim),
        release: mean(release),
    }
}

/// The `q` quantile (0.5 for the median) of `samples`, which must not be empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

/// The sections a bench binary was asked to run (`cargo bench --bench B -- NAME…`; all of them
/// when none is named).
pub struct Sections(Vec<String>);

impl Sections {
    /// From the command line; `None` when cargo only asks the bench to list its tests
    /// (`cargo test --benches`), which must then do nothing.
    pub fn from_args() -> Option<Sections> {
        if std::env::args().any(|a| a == "--list") {
            return None;
        }
        let named = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        Some(Sections(named))
    }

    /// Whether `section` is to run.
    pub fn run(&self, section: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|s| s == section)
    }
}
