//! `drydock serve`: the dispatcher that claims due objects and runs them on update workers.
//!
//! One dispatcher task claims up to as many objects as there are idle workers, in one
//! transaction, shared fairly among the tenants whose work is due given what its workers are
//! running already (`scheduler`), and hands each claim to a worker task. It sleeps until a
//! post wakes it (a local one, or one from another process that the store announces), the next
//! due time arrives, or the poll interval passes (the backstop for a lost wake-up).
//! When the store fails (a full disk, a locked or unreachable database) it backs off
//! exponentially, up to [`MAX_STORE_BACKOFF`], and resumes by itself once the store works again.
//! On shutdown it stops claiming, lets running steps finish for a grace period, then abandons
//! the rest (killing their execs) and gives their claims back so another daemon can take them
//! at once. A retention task prunes what finished long ago, and a settling task adds up what
//! the workers kept of blueprints' log and step history every second (`quota`).

use crate::backoff::Backoff;
use crate::commit::Committer;
use crate::lock::{Held, WorkerSlot};
use crate::queue::Queue;
use crate::quota::Meters;
use crate::scheduler::Load;
use crate::store::{Claim, DaemonRecord, Release, Store};
use crate::worker::{Execs, Plugins, WorkerConfig, Workers};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Update workers by default. A run spends most of its time waiting (for the group commit it
/// joined, a read, a claim), not computing, so many runs in flight keep two cores busy: 16 → 64
/// workers took SQLite from about 870 to 1,120 lifecycles/s (`BENCHMARKS.md`). It stays within
/// the runtime's instance pool (64): a run makes one blueprint call at a time.
pub const DEFAULT_WORKERS: usize = 64;
/// Exec actions running at once by default.
pub const DEFAULT_EXEC_SLOTS: usize = 16;
/// The longest sleep between looks at the queue by default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// How long destroyed objects are kept by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The longest pause after repeated store failures.
pub const MAX_STORE_BACKOFF: Duration = Duration::from_secs(30);
/// How often the retention task looks for what to prune.
const RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);
/// How often the daemon adds what its workers kept of blueprints' log and step history to
/// their totals in the store, and reads back the totals and limits (`quota`).
const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Update workers running at once.
    pub workers: usize,
    /// Execs running at once (they do not hold workers).
    pub exec_slots: usize,
    /// The `drydock` binary, to run execs under `drydock exec-guard`.
    pub exec_guard: Option<std::path::PathBuf>,
    /// How local execs run (`exec::confine`); `drydock serve` detects it at start. Unconfined
    /// by default, for tests that drive a daemon in-process.
    pub exec_confinement: crate::exec::Confinement,
    /// Longest sleep between looks at the queue.
    pub poll: Duration,
    /// How long running steps get to finish at shutdown.
    pub grace: Duration,
    /// How long finished objects, consumed commands and logs are kept; `None` keeps them.
    pub retention: Option<Duration>,
    /// Worker tunables.
    pub worker: WorkerConfig,
    /// A name for this daemon in claims (host and process id by default).
    pub name: String,
    /// The most worker plans one transaction commits (group commit); 1 commits each alone.
    pub group_commit: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            workers: DEFAULT_WORKERS,
            exec_slots: DEFAULT_EXEC_SLOTS,
            exec_guard: None,
            exec_confinement: crate::exec::Confinement::Unconfined,
            poll: DEFAULT_POLL,
            grace: Duration::from_secs(10),
            retention: Some(DEFAULT_RETENTION),
            worker: WorkerConfig::default(),
            name: default_name(),
            group_commit: 64,
        }
    }
}

/// How often a daemon refreshes its row in the registry ([`Store::daemon_seen`]).
pub const SEEN_EVERY: Duration = Duration::from_secs(5);

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Claims taken and not yet finished, so that shutdown can give them back.
type Running = Arc<Mutex<HashMap<u64, Claim>>>;

/// Runs the workers until `shutdown` completes. Posts made through `queue` (by the HTTP API,
/// say) wake the workers at once.
pub async fn run(
    config: DaemonConfig,
    queue: Queue,
    plugins: Plugins,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(config.workers > 0, "--workers must be at least 1");
    let store = queue.store().clone();
    if let Err(error) = plugins.preload(store.as_ref()).await {
        tracing::warn!(%error, "compiling the registered blueprints ahead of time failed");
    }
    let workers = Workers {
        store: store.clone(),
        queue: queue.clone(),
        plugins,
        execs: Execs::new(
            config.exec_slots,
            config.exec_guard.clone(),
            config.exec_confinement.clone(),
        ),
        config: config.worker.clone(),
        request_failures: Default::default(),
    };
    // Posts from other processes (the CLI, other daemons) wake this one at once.
    let _listening = match queue.listen().await {
        Ok(listening) => Some(listening),
        Err(error) => {
            tracing::warn!(%error, poll = ?config.poll, "not listening for other processes' posts; they wait for the poll");
            None
        }
    };
    let retention = config
        .retention
        .map(|keep| tokio::spawn(prune_forever(store.clone(), keep)));
    let registered = tokio::spawn(seen_forever(store.clone(), config.name.clone()));
    let meters = Arc::new(Meters::default());
    settle(store.as_ref(), &meters).await;
    let settling = tokio::spawn(settle_forever(store.clone(), meters.clone()));
    let slots = Arc::new(Semaphore::new(config.workers));
    let committer =
        (config.group_commit > 1).then(|| Committer::start(store.clone(), config.group_commit));
    // Should the committer's task ever end, every plan would fail: stop, saying why, instead.
    let failed = std::sync::Mutex::new(None);
    let shutdown = async {
        let ended = async {
            match &committer {
                Some(committer) => committer.ended().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown => {}
            reason = ended => *failed.lock().unwrap() = Some(reason),
        }
    };
    let running: Running = Arc::default();
    let mut tasks = JoinSet::new();
    let mut next_task = 0u64;
    let mut failures = 0u32;
    tracing::info!(workers = config.workers, name = %config.name, "drydock daemon started");

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        // Every worker slot is taken before claiming: a run coming back from an exec may take
        // a free one meanwhile.
        let mut permits = vec![permit];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let limit = permits.len();
        let load = Load::of(running.lock().unwrap().values());
        let claims = match queue
            .claim(&config.name, limit, config.worker.claim_ttl, &load)
            .await
        {
            Ok(claims) => {
                failures = 0;
                claims
            }
            Err(error) => {
                drop(permits);
                failures += 1;
                let pause = STORE_BACKOFF.delay(failures);
                tracing::warn!(%error, failures, ?pause, "claiming work failed; backing off");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if claims.is_empty() {
            drop(permits);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = queue.wait_for_work(config.poll) => {}
            }
            continue;
        }
        tracing::debug!(claims = claims.len(), "claimed");
        // Fewer than asked for: nothing else was due. Wait for a wake-up rather than claim
        // again at once (a post meanwhile is not lost: the wait sees its notification). The
        // permits left over go back as they drop.
        let drained = claims.len() < limit;
        for (claim, permit) in claims.into_iter().zip(permits.drain(..)) {
            next_task += 1;
            let id = next_task;
            running.lock().unwrap().insert(id, claim.clone());
            let (workers, running) = (workers.clone(), running.clone());
            let held = Held::new(store.clone(), claim.clone(), config.worker.claim_ttl)
                .with_slot(WorkerSlot::new(slots.clone(), permit))
                .with_committer(committer.clone())
                .with_meters(meters.clone());
            tasks.spawn(async move {
                if let Err(panic) = crate::panics::caught(workers.process(held)).await {
                    workers.panicked(claim, &panic).await;
                }
                running.lock().unwrap().remove(&id);
            });
        }
        while tasks.try_join_next().is_some() {}
        if drained {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = queue.wait_for_work(config.poll) => {}
            }
        }
    }

    if let Some(retention) = retention {
        retention.abort();
    }
    drain(&config, store.as_ref(), tasks, running).await;
    registered.abort();
    if let Err(error) = store.daemon_gone(&config.name).await {
        tracing::warn!(%error, "could not remove this daemon from the registry");
    }
    settling.abort();
    settle(store.as_ref(), &meters).await;
    if let Some(reason) = failed.lock().unwrap().take() {
        tracing::error!(%reason, "drydock daemon stopped");
        anyhow::bail!("the daemon stopped: {reason}");
    }
    tracing::info!("drydock daemon stopped");
    Ok(())
}

/// The pauses after store failures in a row: 100 ms doubling, up to [`MAX_STORE_BACKOFF`].
const STORE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), MAX_STORE_BACKOFF);

/// Lets running steps finish for the grace period, then abandons the rest: their futures are
/// dropped (which kills their execs' process groups) and their claims given back, due now.
async fn drain(config: &DaemonConfig, store: &dyn Store, mut tasks: JoinSet<()>, running: Running) {
    tracing::info!("shutting down: finishing running steps");
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_ok() {
        return;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let abandoned: Vec<Claim> = running.lock().unwrap().drain().map(|(_, c)| c).collect();
    for claim in abandoned {
        let release = Release {
            wake_at: Some(store.now()),
            error: Some("abandoned at shutdown".into()),
            failed: false,
        };
        if let Err(error) = store.work_item_release(&claim, &release).await {
            tracing::warn!(object = %claim.object, %error, "could not give back a claim");
        }
    }
}

/// Keeps this daemon's row in the registry fresh, every [`SEEN_EVERY`].
async fn seen_forever(store: Arc<dyn Store>, name: String) {
    let mut daemon = DaemonRecord {
        name,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: store.now(),
        seen_at: store.now(),
    };
    let mut every = tokio::time::interval(SEEN_EVERY);
    loop {
        every.tick().await;
        daemon.seen_at = store.now();
        if let Err(error) = store.daemon_seen(&daemon).await {
            tracing::warn!(%error, "could not refresh this daemon's row in the registry");
        }
    }
}

/// Settles the quotas' accounts every [`SETTLE_EVERY`].
async fn settle_forever(store: Arc<dyn Store>, meters: Arc<Meters>) {
    let mut every = tokio::time::interval(SETTLE_EVERY);
    loop {
        every.tick().await;
        settle(store.as_ref(), &meters).await;
    }
}

/// Adds what the workers kept of blueprints' log and step history to their totals, then reads
/// the totals (retention may have given some back) and limits into `meters`.
async fn settle(store: &dyn Store, meters: &Meters) {
    let kept = meters.unsettled();
    if !kept.is_empty()
        && let Err(error) = store.blueprint_add_kept(&kept).await
    {
        tracing::warn!(%error, "adding up what blueprints kept failed; trying again");
        meters.unsettle(&kept);
        return;
    }
    match store.blueprint_list().await {
        Ok(blueprints) => meters.refresh(&blueprints),
        Err(error) => tracing::warn!(%error, "reading the blueprints' quotas failed"),
    }
}

/// Prunes what finished more than `keep` ago, now and then every [`RETENTION_EVERY`].
async fn prune_forever(store: Arc<dyn Store>, keep: Duration) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        every.tick().await;
        let before = store.now().saturating_sub(keep.as_millis() as u64);
        match store.gc(before).await {
            Ok(report) => tracing::info!(?report, "pruned what finished before the retention"),
            Err(error) => tracing::warn!(%error, "pruning failed; trying again later"),
        }
    }
}
