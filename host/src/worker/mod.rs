//! Update workers: the single writer of every lease and resource.
//!
//! [`process`] runs one claimed object: it consumes the object's queued commands in order
//! (recording `applied` or `ignored: <reason>` on each), turns a due `until` into a release
//! command, then advances the object's state machine (`lease::step`, `resource::step`) as far as
//! it can go without waiting. Every blueprint call happens outside any transaction; what it
//! returns is applied in one guarded transaction ([`Held::apply`]). The run ends by giving the
//! claim back with the next wake time.

mod context;
mod hooks;
mod lease;
mod resource;

pub use context::{Plugins, blocking, guarded, lease_snapshot, resource_snapshot};
pub(crate) use hooks::{Called, HookCall, Settle};
pub(crate) use lease::{activation, break_lease, planned};

use crate::domain::Timestamp;
use crate::lock::Held;
use crate::plugin;
use crate::queue::Queue;
use crate::store::{self, ObjectId, Release, Store};
use std::sync::Arc;
use std::time::Duration;

/// Tunables of the workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a claim lasts without a write or heartbeat.
    pub claim_ttl: Duration,
    /// How long a lease waits before retrying when no resource is available.
    pub resource_wait: Duration,
    /// How long an active resource must sit without leases before the allocator may reclaim it.
    pub reclaim_idle: Duration,
    /// Retry delay after a temporary failure.
    pub backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            claim_ttl: Duration::from_secs(30),
            resource_wait: Duration::from_secs(15),
            reclaim_idle: Duration::from_secs(180),
            backoff: Duration::from_secs(1),
        }
    }
}

/// What every worker shares.
#[derive(Clone)]
pub struct Workers {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Posting and waking.
    pub queue: Queue,
    /// Loaded blueprint components.
    pub plugins: Plugins,
    /// Tunables.
    pub config: WorkerConfig,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The claim was lost: someone else is the writer now. Nothing more may be written.
    #[error(transparent)]
    Fenced(store::Error),
    /// A failure that a later run may not hit (a busy slot lock, a database hiccup).
    #[error("{0}")]
    Temporary(String),
}

impl From<store::Error> for RunError {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::Fenced { .. } => RunError::Fenced(error),
            other => RunError::Temporary(other.to_string()),
        }
    }
}

impl From<plugin::Error> for RunError {
    fn from(error: plugin::Error) -> Self {
        RunError::Temporary(error.to_string())
    }
}

/// Where an object's state machine stands after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It changed; look again at once.
    Continue,
    /// Nothing to do until this time (or a wake-up); `None` waits for a wake-up only.
    Wait(Option<Timestamp>),
}

impl Workers {
    /// Runs one claimed object until it has to wait, then gives the claim back.
    pub async fn process(&self, held: Held) {
        let object = held.object();
        let result = self.run(&held).await;
        let release = match result {
            Ok(_) if held.is_given_back() => {
                self.queue.wake_workers();
                return;
            }
            Ok(wake_at) => Release {
                wake_at,
                error: None,
            },
            Err(RunError::Fenced(error)) => {
                tracing::warn!(%object, %error, "claim lost; another worker owns the object now");
                return;
            }
            Err(RunError::Temporary(error)) => {
                tracing::info!(%object, %error, "temporary failure; retrying later");
                Release {
                    wake_at: Some(self.after(self.config.backoff)),
                    error: Some(error),
                }
            }
        };
        if let Err(error) = held.release(&release).await {
            tracing::warn!(%object, %error, "giving the claim back failed; it will expire");
        }
        self.queue.wake_workers();
    }

    async fn run(&self, held: &Held) -> Result<Option<Timestamp>, RunError> {
        loop {
            tracing::debug!(object = %held.object(), "step");
            let next = match held.object() {
                ObjectId::Lease(_) => lease::step(self, held).await?,
                ObjectId::Resource(_) => resource::step(self, held).await?,
                ObjectId::Blueprint(_) => Next::Wait(None),
            };
            if let Next::Wait(at) = next {
                return Ok(at);
            }
        }
    }

    /// The object's queued commands, oldest first.
    async fn queued_commands(&self, object: ObjectId) -> Result<Vec<store::Command>, RunError> {
        let filter = store::CommandFilter {
            target: Some(object),
            pending: true,
        };
        Ok(self.store.command_list(&filter).await?)
    }

    /// Queues a release authored `expiry` when `until` has passed and the object can still take
    /// it; returns whether it did.
    async fn expire(
        &self,
        held: &Held,
        until: Option<Timestamp>,
        releasable: bool,
    ) -> Result<bool, RunError> {
        let due = until.is_some_and(|until| until <= self.store.now());
        if !due || !releasable {
            return Ok(false);
        }
        let object = held.object();
        let mut plan = store::Plan::new();
        plan.push(store::Write::PostCommand {
            target: object,
            kind: store::CommandKind::Release,
            author: "expiry".into(),
        });
        plan.log(
            object,
            &format!("{}.expired", object.kind()),
            "reached its deadline",
        );
        held.apply(&plan).await?;
        Ok(true)
    }

    /// `now + delay`, in store time.
    pub(crate) fn after(&self, delay: Duration) -> Timestamp {
        self.store.now() + delay.as_millis() as u64
    }
}
