//! Group commit: the fenced plans of many workers share one durable transaction.
//!
//! A worker hands its plan to the [`Committer`] and waits. The committer's task takes every
//! plan waiting at that moment (up to a batch's worth) and applies them with
//! [`Store::apply_batch`]: one transaction, a savepoint per plan, each plan still guarded by
//! its own claim and applied all or nothing on its own. A plan that is fenced or refused is
//! rolled back to its savepoint and its worker gets the error; its neighbours commit. No worker
//! hears "applied" before the transaction is durable. While one batch commits, the next one
//! gathers, so the busier the daemon, the more plans share each fsync.

use crate::store::{self, Claim, ObjectId, Plan, PlanToApply, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A plan waiting for its batch, and where its outcome goes.
struct Waiting {
    claim: Claim,
    plan: Plan,
    ttl: Duration,
    outcome: oneshot::Sender<store::Result<Vec<ObjectId>>>,
}

/// The front of the group-commit task; cheap to clone. The task ends when every clone is gone.
#[derive(Clone, Debug)]
pub struct Committer {
    waiting: mpsc::UnboundedSender<Waiting>,
}

impl Committer {
    /// Starts the task that commits plans for `store`, at most `max_batch` per transaction.
    /// Must be called within a tokio runtime.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> Self {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(store, queue, max_batch.max(1)));
        Committer { waiting }
    }

    /// Applies `plan` under `claim` in the next batch; returns once that batch committed (or
    /// with the plan's own error, or the batch's).
    pub async fn apply(
        &self,
        claim: &Claim,
        plan: &Plan,
        ttl: Duration,
    ) -> store::Result<Vec<ObjectId>> {
        let (outcome, result) = oneshot::channel();
        let waiting = Waiting {
            claim: claim.clone(),
            plan: plan.clone(),
            ttl,
            outcome,
        };
        if self.waiting.send(waiting).is_err() {
            return Err(stopped());
        }
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// What a plan gets when the committer is gone (the daemon is stopping): nothing was written.
fn stopped() -> store::Error {
    store::Error::BatchFailed {
        message: "the group-commit task has stopped".into(),
        unreachable: false,
    }
}

/// Takes what is waiting, commits it as one batch, answers each plan; until every sender is
/// gone.
async fn commit_batches(
    store: Arc<dyn Store>,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        if let [alone] = &batch[..] {
            // Nobody to share the commit with: a plain guarded transaction, no savepoint.
            let outcome = store.apply(&alone.claim, &alone.plan, alone.ttl).await;
            let waiting = batch.pop().expect("one plan");
            let _ = waiting.outcome.send(outcome);
            continue;
        }
        let plans: Vec<PlanToApply<'_>> = batch
            .iter()
            .map(|w| PlanToApply {
                claim: &w.claim,
                plan: &w.plan,
                ttl: w.ttl,
            })
            .collect();
        let outcomes = store.apply_batch(&plans).await;
        drop(plans);
        match outcomes {
            Ok(outcomes) => {
                for (waiting, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = waiting.outcome.send(outcome);
                }
            }
            Err(error) => {
                // The transaction itself failed: nothing of the batch was written.
                let (message, unreachable) = (error.to_string(), error.is_unreachable());
                tracing::warn!(error = %message, plans = batch.len(), "a group commit failed");
                for waiting in batch.drain(..) {
                    let _ = waiting.outcome.send(Err(store::Error::BatchFailed {
                        message: message.clone(),
                        unreachable,
                    }));
                }
            }
        }
    }
}
