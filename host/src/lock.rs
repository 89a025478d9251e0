//! Fenced per-object claims (invariant I1): a [`Held`] claim is the only way to write an object.
//!
//! A claim comes from [`queue::Queue::claim`](crate::queue::Queue::claim) with a fencing token and
//! an expiry. Every write made through [`Held::apply`] starts with the guard statement, in the same
//! transaction, which checks the token and extends the claim. Past its expiry a claim may be
//! taken over, which moves the token on: a worker that stalled that long finds its token
//! superseded and cannot commit ([`store::Error::Fenced`]). One whose store stalled and whose
//! claim nobody took meanwhile still holds it: its next beat or write renews it.
//!
//! A claim lives as long as its worker: a timer beats every third of the time-to-live, whatever
//! the step is doing (a long allocation pass of many short calls, an exec, a slow database), and
//! stops when the claim is dropped. When a beat finds the claim lost, [`Held::lost`] completes, so
//! work in the world (an exec's process group) can be stopped before another worker starts it
//! again.
//!
//! A held claim also carries the run's worker slot, when the dispatcher gave it one: a run hands
//! the slot back while it only waits (for an exec), so waiting never holds an update worker.
//! In the daemon its writes go through the [`Committer`], which commits them together with
//! other workers' (each still under its own guard), and it keeps the steps its blueprint
//! returned for the audit trail until its next write.

use crate::commit::Committer;
use crate::quota::Meters;
use crate::store::{self, Claim, ObjectId, Plan, Release, StepRecord, Store, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// A claim the current task holds, with the store it writes through.
pub struct Held {
    store: Arc<dyn Store>,
    claim: Claim,
    ttl: Duration,
    given_back: AtomicBool,
    lost: watch::Receiver<bool>,
    held_until: Arc<watch::Sender<i64>>,
    heartbeat: JoinHandle<()>,
    slot: Option<WorkerSlot>,
    steps: Mutex<Vec<StepRecord>>,
    meters: Option<Arc<Meters>>,
    committer: Option<Committer>,
}

/// The update worker a run occupies: a permit of the dispatcher's worker semaphore.
pub struct WorkerSlot {
    workers: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl WorkerSlot {
    /// A slot holding `permit` of `workers`.
    pub fn new(workers: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> Self {
        WorkerSlot {
            workers,
            permit: Mutex::new(Some(permit)),
        }
    }
}

impl Held {
    /// Wraps a claim taken for `ttl` and starts its heartbeat. Must be called within a tokio
    /// runtime.
    pub fn new(store: Arc<dyn Store>, claim: Claim, ttl: Duration) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let held_until = Arc::new(watch::Sender::new(claim.held_until));
        let heartbeat = tokio::spawn(beat(
            store.clone(),
            claim.clone(),
            ttl,
            lost_tx,
            held_until.clone(),
        ));
        Held {
            store,
            claim,
            ttl,
            given_back: AtomicBool::new(false),
            lost,
            held_until,
            heartbeat,
            slot: None,
            steps: Mutex::new(Vec::new()),
            meters: None,
            committer: None,
        }
    }

    /// The same claim, its plans committed by `committer` together with other workers'.
    pub fn with_committer(mut self, committer: Option<Committer>) -> Self {
        self.committer = committer;
        self
    }

    /// The same claim, occupying `slot` of the dispatcher's workers.
    pub fn with_slot(mut self, slot: WorkerSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    /// The claimed object.
    pub fn object(&self) -> ObjectId {
        self.claim.object
    }

    /// The claim itself.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// The same claim, its plans passing through `meters` (the blueprints' quotas on what
    /// they write) before they are applied.
    pub fn with_meters(mut self, meters: Arc<Meters>) -> Self {
        self.meters = Some(meters);
        self
    }

    /// Keeps a step a blueprint returned for the audit trail: it is written with the next
    /// plan, as applied, or on its own as refused (with the reason) if that plan is refused.
    pub fn audit(&self, step: StepRecord) {
        self.steps.lock().unwrap().push(step);
    }

    /// Applies a plan in one guarded transaction; returns the ids the plan inserted. A plan
    /// that ends with `ReleaseClaim` gives the claim back in the same transaction. Steps kept
    /// by [`Held::audit`] go with it.
    pub async fn apply(&self, plan: &Plan) -> store::Result<Vec<ObjectId>> {
        let steps = std::mem::take(&mut *self.steps.lock().unwrap());
        if steps.is_empty() {
            return self.apply_plan(plan).await;
        }
        let mut audited = plan.clone();
        audited.insert_before_release(steps.iter().cloned().map(Write::RecordStep));
        let error = match self.apply_plan(&audited).await {
            Ok(inserted) => return Ok(inserted),
            Err(error) => error,
        };
        if error.is_refusal() {
            // The host refused what the steps asked for: the trail says so, and why.
            let mut refused = Plan::new();
            for mut step in steps {
                if step.verdict == "applied" {
                    step.verdict = format!("refused: {error}");
                }
                refused.push(Write::RecordStep(step));
            }
            if let Err(again) = self.apply_plan(&refused).await {
                tracing::warn!(object = %self.claim.object, error = %again, "recording refused steps");
            }
        } else {
            // Nothing was decided: the steps go with the run's next write, if it makes one.
            self.steps.lock().unwrap().splice(0..0, steps);
        }
        Err(error)
    }

    /// Applies `plan` as the blueprints' quotas admit it (`quota`), keeping what it kept once
    /// it committed.
    async fn apply_plan(&self, plan: &Plan) -> store::Result<Vec<ObjectId>> {
        let Some(meters) = &self.meters else {
            return self.commit(plan).await;
        };
        let (admitted, charge) = meters.admit(plan, self.store.now());
        let applied = self.commit(&admitted).await;
        meters.committed(charge, applied.is_ok());
        applied
    }

    /// Commits `plan` and counts in the metrics what it did, or why it was refused.
    async fn commit(&self, plan: &Plan) -> store::Result<Vec<ObjectId>> {
        let began = store::boottime_ms();
        let applied = match &self.committer {
            Some(committer) => committer.apply(&self.claim, plan, self.ttl).await,
            None => self.store.apply(&self.claim, plan, self.ttl).await,
        };
        let metrics = crate::metrics::global();
        let applied = match applied {
            Ok(applied) => applied,
            Err(error) => {
                match &error {
                    store::Error::Fenced { .. } => metrics.write_fenced(),
                    store::Error::Limited {
                        blueprint, limit, ..
                    } => metrics.limit_refused(blueprint, *limit),
                    _ => {}
                }
                return Err(error);
            }
        };
        for &(kind, applied) in &applied.consumed {
            metrics.command_consumed(kind, applied);
        }
        tracing::debug!(object = %self.claim.object, writes = plan.writes().len(), "applied");
        if plan.releases_claim() {
            self.given_back.store(true, Ordering::SeqCst);
            self.heartbeat.abort();
        } else {
            extend(&self.held_until, began, self.ttl);
        }
        Ok(applied.inserted)
    }

    /// What ties an exec run by `program` (`drydock exec-guard`) to this claim: the time until
    /// which the claim is surely held (boot clock on this host, moved on by every heartbeat and
    /// write), a margin of a sixth of the time-to-live before it, a keepalive a quarter of that
    /// margin (a daemon silent for two is taken as stopped, and its exec killed, well before
    /// the claim can expire), and a stalled store waited out paused for at most one
    /// time-to-live.
    pub fn exec_watchdog(&self, program: std::path::PathBuf) -> crate::exec::Watchdog {
        let margin = self.ttl / 6;
        crate::exec::Watchdog {
            program,
            held_until: self.held_until.subscribe(),
            margin,
            keepalive: margin / 4,
            pause_limit: self.ttl,
        }
    }

    /// Whether a plan already gave the claim back.
    pub fn is_given_back(&self) -> bool {
        self.given_back.load(Ordering::SeqCst)
    }

    /// Completes when a heartbeat found the claim lost (never, while it is held).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
        if !*lost.borrow() {
            // The heartbeat stopped without losing the claim (it is being dropped): never.
            std::future::pending::<()>().await;
        }
    }

    /// Runs `work` until it completes or the claim is lost; in the second case `work` is
    /// dropped (which stops what it started) and `Fenced` comes back.
    pub async fn unless_lost<T>(&self, work: impl Future<Output = T>) -> store::Result<T> {
        tokio::select! {
            value = work => Ok(value),
            _ = self.lost() => Err(store::Error::Fenced {
                object: self.claim.object,
                token: self.claim.token,
            }),
        }
    }

    /// Runs `work`, which only waits (on an exec, say), with the run's worker slot handed back
    /// to the dispatcher meanwhile; takes a slot again before returning.
    pub async fn off_worker<T>(&self, work: impl Future<Output = T>) -> T {
        let Some(slot) = &self.slot else {
            return work.await;
        };
        drop(slot.permit.lock().unwrap().take());
        let value = work.await;
        let permit = slot
            .workers
            .clone()
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed");
        *slot.permit.lock().unwrap() = Some(permit);
        value
    }

    /// Gives the claim back with the object's next wake time.
    pub async fn release(self, release: &Release) -> store::Result<()> {
        self.store.work_item_release(&self.claim, release).await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Records that the claim was extended by a transaction that began at `began` (boot clock).
fn extend(held_until: &watch::Sender<i64>, began: i64, ttl: Duration) {
    let until = began + ttl.as_millis() as i64;
    held_until.send_if_modified(|current| {
        let later = until > *current;
        if later {
            *current = until;
        }
        later
    });
}

/// Extends the claim every third of `ttl` until it is lost (then says so) or the task is
/// aborted. A failed beat that is not a loss (the database is busy or down) is retried at the
/// next tick; past the claim's expiry, a beat that gets through renews it unless someone took
/// it over meanwhile. Meanwhile the exec guard holds this claim's execs paused (see
/// `exec::guard`).
async fn beat(
    store: Arc<dyn Store>,
    claim: Claim,
    ttl: Duration,
    lost: watch::Sender<bool>,
    held_until: Arc<watch::Sender<i64>>,
) {
    let mut ticks = tokio::time::interval(ttl / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let began = store::boottime_ms();
        match store.work_item_heartbeat(&claim, ttl).await {
            Ok(()) => extend(&held_until, began, ttl),
            Err(store::Error::Fenced { .. }) => {
                tracing::warn!(object = %claim.object, "heartbeat: the claim was lost");
                let _ = lost.send(true);
                return;
            }
            Err(error) => tracing::warn!(object = %claim.object, %error, "heartbeat failed"),
        }
    }
}
