//! Update workers: the single writer of every lease and resource.
//!
//! [`Workers::process`] runs one claimed object: it consumes the object's queued commands in
//! order (recording `applied` or `ignored: <reason>` on each), turns a due `until` into a release
//! command, then advances the object's state machine (`lease::step`, `resource::step`) as far as
//! it can go without waiting. Every blueprint call happens outside any transaction; what it
//! returns is applied in one guarded transaction ([`Held::apply`]). The run ends by giving the
//! claim back with the next wake time.
//!
//! A run that fails is retried with exponential back-off and jitter (`crate::backoff`).
//! Waiting on shared capacity (a busy slot lock, a blueprint's call slots, its resource rate)
//! and a failing store (a failed group commit included) are not the object's fault and do not
//! count; other failures do, and after [`WorkerConfig::max_attempts`] in a row the object
//! breaks with the last error as its reason, so no object and no command waits forever. One
//! already released or broken keeps trying after the longest back-off: no object is ever left
//! without a wake-up.

mod blame;
mod context;
mod hooks;
mod lease;
mod resource;

pub use blame::{Blame, RequestFailures, Shape};
pub use context::{Plugins, lease_snapshot, resource_snapshot};
pub(crate) use hooks::{Called, HookCall, Settle, Subject, confinement_now};
pub(crate) use lease::{
    activation, break_lease, broke, broken as broken_lease, planned, resource_broke,
};

use crate::backoff::Backoff;
use crate::domain::Timestamp;
use crate::lock::Held;
use crate::plugin;
use crate::queue::Queue;
use crate::store::{self, ObjectId, Release, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Tunables of the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// How long a claim lasts without a write or heartbeat.
    pub claim_ttl: Duration,
    /// How long a lease waiting for capacity sleeps at most (it is woken when capacity
    /// appears; this is the backstop).
    pub resource_wait: Duration,
    /// How long an active resource must sit without leases before the allocator may reclaim it.
    pub reclaim_idle: Duration,
    /// Delays between failed runs of an object.
    pub retry: Backoff,
    /// Failed runs in a row after which the object breaks.
    pub max_attempts: u32,
    /// Retry delay when a run stepped aside for shared capacity.
    pub busy_retry: Duration,
    /// The shortest yield a blueprint gets: `yield(0)` waits this long; a step put off by one
    /// of its blueprint's limits waits as long.
    pub min_yield: Duration,
    /// Delays before a blueprint whose allocations or activations fail is used again.
    pub blueprint_backoff: Backoff,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            claim_ttl: Duration::from_secs(30),
            resource_wait: Duration::from_secs(15),
            reclaim_idle: Duration::from_secs(180),
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            max_attempts: 10,
            busy_retry: Duration::from_millis(250),
            min_yield: Duration::from_secs(1),
            blueprint_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
        }
    }
}

/// Where execs run: a limit of their own (they do not hold update workers while they run), and
/// the guard program that ties each to its claim.
#[derive(Debug, Clone)]
pub struct Execs {
    /// Execs running at once.
    pub slots: Arc<Semaphore>,
    /// The `drydock` binary, to run execs under `drydock exec-guard`; `None` runs them
    /// directly (they still die with a timeout, a lost claim or a shutdown, but not with a
    /// killed daemon).
    pub guard: Option<PathBuf>,
    /// How local execs run (`exec::confine`).
    pub confinement: crate::exec::Confinement,
}

impl Execs {
    /// `slots` execs at once, guarded by `guard`, local ones run as `confinement` says.
    pub fn new(
        slots: usize,
        guard: Option<PathBuf>,
        confinement: crate::exec::Confinement,
    ) -> Self {
        Execs {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            guard,
            confinement,
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
    /// Where execs run.
    pub execs: Execs,
    /// Tunables.
    pub config: WorkerConfig,
    /// Which requests failed on which blueprint lately (`blame`).
    pub request_failures: Arc<RequestFailures>,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The claim was lost: someone else is the writer now. Nothing more may be written.
    #[error(transparent)]
    Fenced(store::Error),
    /// The run stepped aside for shared capacity (a busy slot lock, a blueprint's call slots,
    /// its resource rate): retried soon, not counted as a failure.
    #[error("{0}")]
    Busy(String),
    /// A step was put off by one of its blueprint's limits (`crate::limits`): retried after
    /// the minimum yield, not counted.
    #[error("{0}")]
    Limited(String),
    /// The store failed (full, locked, unreachable): retried with back-off, not counted.
    #[error("{0}")]
    Unavailable(String),
    /// A failure a later run may not hit; counted towards breaking the object.
    #[error("{0}")]
    Temporary(String),
}

impl From<store::Error> for RunError {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::Fenced { .. } => RunError::Fenced(error),
            store::Error::SlotLockBusy { .. } => RunError::Busy(error.to_string()),
            store::Error::Limited { reason, .. } => RunError::Limited(reason),
            // A failed group commit is the store's trouble, shared by every plan of the batch,
            // not the failure of any one object.
            store::Error::Database(_)
            | store::Error::Sqlite(_)
            | store::Error::Migrate(_)
            | store::Error::BatchFailed { .. } => RunError::Unavailable(error.to_string()),
            other => RunError::Temporary(other.to_string()),
        }
    }
}

impl From<plugin::Error> for RunError {
    fn from(error: plugin::Error) -> Self {
        match error.is_temporary() {
            true => RunError::Busy(error.to_string()),
            false => RunError::Temporary(error.to_string()),
        }
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
        let result = self.run(&held).await;
        self.settle(held, result).await;
    }

    /// After a run that panicked (a bug in the host): the claim is given back as a failed run,
    /// so the object is retried with back-off and breaks if it keeps happening.
    pub async fn panicked(&self, claim: store::Claim, panic: &str) {
        tracing::error!(object = %claim.object, %panic, "a run panicked");
        let held = Held::new(self.store.clone(), claim, self.config.claim_ttl);
        let error = RunError::Temporary(format!("the host failed (a bug): {panic}"));
        self.settle(held, Err(error)).await;
    }

    /// Gives the claim back according to how the run ended.
    async fn settle(&self, held: Held, result: Result<Option<Timestamp>, RunError>) {
        let object = held.object();
        let release = match result {
            Ok(_) if held.is_given_back() => {
                self.queue.wake_workers();
                return;
            }
            Ok(wake_at) => Release {
                wake_at,
                ..Release::default()
            },
            Err(RunError::Fenced(error)) => {
                tracing::warn!(%object, %error, "claim lost; another worker owns the object now");
                return;
            }
            Err(RunError::Busy(reason)) => {
                tracing::debug!(%object, %reason, "stepping aside; retrying soon");
                self.retry_at(self.config.busy_retry, reason, false)
            }
            Err(RunError::Limited(reason)) => {
                tracing::debug!(%object, %reason, "at a limit; retrying later");
                let pause = self.config.min_yield.max(self.config.busy_retry);
                self.retry_at(pause, reason, false)
            }
            Err(RunError::Unavailable(reason)) => {
                tracing::warn!(%object, %reason, "the store failed; retrying later");
                let attempt = held.claim().attempts as u32 + 1;
                self.retry_at(self.config.retry.delay(attempt), reason, false)
            }
            Err(RunError::Temporary(reason)) => {
                let attempt = held.claim().attempts as u32 + 1;
                if attempt >= self.config.max_attempts {
                    return self.give_up(held, attempt, reason).await;
                }
                tracing::info!(%object, %reason, attempt, "run failed; retrying later");
                self.retry_at(self.config.retry.delay(attempt), reason, true)
            }
        };
        if let Err(error) = held.release(&release).await {
            tracing::warn!(%object, %error, "giving the claim back failed; it will expire");
        }
        self.queue.wake_workers();
    }

    fn retry_at(&self, delay: Duration, reason: String, failed: bool) -> Release {
        Release {
            wake_at: Some(self.after(delay)),
            error: Some(reason),
            failed,
        }
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

    /// The object failed `attempts` runs in a row: it breaks (if it still can) with `reason`,
    /// its queued commands are consumed, and it is not retried on its own any more.
    async fn give_up(&self, held: Held, attempts: u32, reason: String) {
        let object = held.object();
        tracing::warn!(%object, %reason, attempts, "giving up on the object");
        let why = format!("gave up after {attempts} failed runs in a row; the last: {reason}");
        let plan = match self.give_up_plan(object, attempts, &why).await {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%object, %error, "could not record giving up");
                return;
            }
        };
        if let Err(error) = held.apply(&plan).await {
            tracing::warn!(%object, %error, "could not record giving up; it will expire");
        }
        self.queue.wake_workers();
    }

    /// The writes that record giving up: the object breaks if it still can (and is woken at
    /// once to go on to be destroyed); one already on its way out keeps a wake-up backed off as
    /// after `attempts` failures, so that no object is ever left without one.
    async fn give_up_plan(
        &self,
        object: ObjectId,
        attempts: u32,
        why: &str,
    ) -> Result<store::Plan, RunError> {
        let commands = self.queued_commands(object).await?;
        // A live object breaks and goes on to be destroyed; one already on its way out stays
        // as it is and tries again after the back-off (or at once when a new command comes).
        let (mut plan, broke) = match object {
            ObjectId::Lease(_) => lease::give_up(&self.store.lease_get(object).await?, why),
            _ => resource::give_up(&self.store.resource_get(object).await?, why),
        };
        let outcome = format!("ignored: {object} {why}");
        for command in commands {
            plan.push(store::Write::ConsumeCommand {
                id: command.id,
                outcome: outcome.clone(),
            });
        }
        let wake_at = match broke {
            true => self.store.now(),
            false => self.after(self.config.retry.delay(attempts)),
        };
        plan.push(store::Write::ReleaseClaim {
            wake_at: Some(wake_at),
        });
        Ok(plan)
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
            author: store::EXPIRY_AUTHOR.into(),
        });
        plan.log(
            object,
            &format!("{}.expired", object.kind()),
            "reached its deadline",
        );
        held.apply(&plan).await?;
        Ok(true)
    }

    /// When `called` (an activation) served the request: the write that ends the blueprint's failure streak,
    /// if it has one (and the end of its failing requests' streak).
    pub(crate) fn blueprint_worked(
        &self,
        blueprint: &store::Blueprint,
        called: &Called,
    ) -> Option<store::Write> {
        if !called.is_done() {
            return None;
        }
        self.request_failures.worked(blueprint.id);
        (blueprint.failures > 0).then_some(store::Write::BlueprintRecovered {
            blueprint: blueprint.id,
        })
    }

    /// The write that records a failed allocation or activation of a request of `shape`, if
    /// it counts against the blueprint (`blame`): then the blueprint backs off, with the cause.
    pub(crate) fn blueprint_failed(
        &self,
        blueprint: &store::Blueprint,
        reason: &str,
        blame: Blame,
        shape: Shape,
    ) -> Option<store::Write> {
        let reason = match blame {
            Blame::Blueprint => reason.to_string(),
            Blame::Request => {
                let distinct = self.request_failures.failed(blueprint.id, shape);
                if distinct < blame::DISTINCT_SHAPES {
                    return None;
                }
                format!(
                    "requests of {distinct} different kinds failed in a row, so the cause \
                     looks like the blueprint's, not theirs; the last: {reason}"
                )
            }
        };
        let attempt = blueprint.failures as u32 + 1;
        Some(store::Write::BlueprintFailed {
            blueprint: blueprint.id,
            reason: crate::text::clip(&reason, 500),
            retry_at: self.after(self.config.blueprint_backoff.delay(attempt)),
        })
    }

    /// `now + delay`, in store time.
    pub(crate) fn after(&self, delay: Duration) -> Timestamp {
        self.store.now() + delay.as_millis() as u64
    }
}
