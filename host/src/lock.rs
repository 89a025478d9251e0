//! Fenced per-object claims (invariant I1): a [`Held`] claim is the only way to write an object.
//!
//! A claim comes from [`queue::Queue::claim`](crate::queue::Queue::claim) with a fencing token and
//! an expiry. Every write made through [`Held::apply`] starts with the guard statement, in the same
//! transaction, which checks the token and the expiry and extends the claim (so the guard is also
//! the heartbeat). A worker that stalled past its expiry finds its token superseded and cannot
//! commit: [`store::Error::Fenced`].

use crate::store::{self, Claim, ObjectId, Plan, Release, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A claim the current task holds, with the store it writes through.
pub struct Held {
    store: Arc<dyn Store>,
    claim: Claim,
    ttl: Duration,
    given_back: AtomicBool,
}

impl Held {
    /// Wraps a claim taken for `ttl`.
    pub fn new(store: Arc<dyn Store>, claim: Claim, ttl: Duration) -> Self {
        Held {
            store,
            claim,
            ttl,
            given_back: AtomicBool::new(false),
        }
    }

    /// The claimed object.
    pub fn object(&self) -> ObjectId {
        self.claim.object
    }

    /// The claim itself.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Applies a plan in one guarded transaction; returns the ids the plan inserted. A plan
    /// that ends with `ReleaseClaim` gives the claim back in the same transaction.
    pub async fn apply(&self, plan: &Plan) -> store::Result<Vec<ObjectId>> {
        let inserted = self.store.apply(&self.claim, plan, self.ttl).await?;
        tracing::debug!(object = %self.claim.object, writes = plan.writes().len(), "applied");
        if plan.releases_claim() {
            self.given_back.store(true, Ordering::SeqCst);
        }
        Ok(inserted)
    }

    /// Whether a plan already gave the claim back.
    pub fn is_given_back(&self) -> bool {
        self.given_back.load(Ordering::SeqCst)
    }

    /// Extends the claim without writing anything else.
    pub async fn heartbeat(&self) -> store::Result<()> {
        self.store.work_item_heartbeat(&self.claim, self.ttl).await
    }

    /// Keeps the claim alive while `work` runs (for long exec actions), beating every third of
    /// the time-to-live. Returns the work's result, or `Fenced` if a beat found the claim lost.
    pub async fn keep_alive<T>(&self, work: impl Future<Output = T>) -> store::Result<T> {
        tokio::pin!(work);
        let mut beat = tokio::time::interval(self.ttl / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return Ok(result),
                _ = beat.tick() => self.heartbeat().await?,
            }
        }
    }

    /// Gives the claim back with the object's next wake time.
    pub async fn release(self, release: &Release) -> store::Result<()> {
        self.store.work_item_release(&self.claim, release).await
    }
}
