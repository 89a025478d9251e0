//! `drydock serve`: the dispatcher that claims due objects and runs them on update workers.
//!
//! One dispatcher task claims up to as many objects as there are idle workers, in one statement,
//! and hands each claim to a worker task. It sleeps until a local post wakes it, the next due
//! time arrives, or the poll interval passes (the backstop for posts made by other processes).
//! On shutdown it stops claiming, lets running steps finish for a grace period, then abandons
//! the rest and gives their claims back so another daemon can take them at once.

use crate::lock::Held;
use crate::queue::Queue;
use crate::store::{Claim, Release};
use crate::worker::{Plugins, WorkerConfig, Workers};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Update workers running at once.
    pub workers: usize,
    /// Longest sleep between looks at the queue.
    pub poll: Duration,
    /// How long running steps get to finish at shutdown.
    pub grace: Duration,
    /// Worker tunables.
    pub worker: WorkerConfig,
    /// A name for this daemon in claims (host and process id by default).
    pub name: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            workers: 4,
            poll: Duration::from_millis(250),
            grace: Duration::from_secs(10),
            worker: WorkerConfig::default(),
            name: default_name(),
        }
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

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
        config: config.worker.clone(),
    };
    let slots = Arc::new(Semaphore::new(config.workers));
    let running: Arc<Mutex<HashMap<u64, Claim>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut next_task = 0u64;
    tracing::info!(workers = config.workers, name = %config.name, "drydock daemon started");

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let limit = 1 + slots.available_permits();
        let claims = match queue
            .claim(&config.name, limit, config.worker.claim_ttl)
            .await
        {
            Ok(claims) => claims,
            Err(error) => {
                tracing::warn!(%error, "claiming work failed");
                Vec::new()
            }
        };
        if claims.is_empty() {
            drop(permit);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = queue.wait_for_work(config.poll) => {}
            }
            continue;
        }
        let mut permit = Some(permit);
        tracing::debug!(claims = claims.len(), "claimed");
        for claim in claims {
            let permit = match permit.take() {
                Some(permit) => permit,
                None => slots
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed no more than free slots"),
            };
            next_task += 1;
            let id = next_task;
            running.lock().unwrap().insert(id, claim.clone());
            let (workers, running) = (workers.clone(), running.clone());
            let held = Held::new(store.clone(), claim, config.worker.claim_ttl);
            tasks.spawn(async move {
                workers.process(held).await;
                running.lock().unwrap().remove(&id);
                drop(permit);
            });
        }
        while tasks.try_join_next().is_some() {}
    }

    tracing::info!("shutting down: finishing running steps");
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let abandoned: Vec<Claim> = running.lock().unwrap().drain().map(|(_, c)| c).collect();
        for claim in abandoned {
            let release = Release {
                wake_at: Some(store.now()),
                error: Some("abandoned at shutdown".into()),
            };
            if let Err(error) = store.work_item_release(&claim, &release).await {
                tracing::warn!(object = %claim.object, %error, "could not give back a claim");
            }
        }
    }
    tracing::info!("drydock daemon stopped");
    Ok(())
}
