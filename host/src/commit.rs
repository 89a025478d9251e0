//! Group commit: the fenced plans of many workers share one durable transaction.
//!
//! A worker hands its plan to the [`Committer`] and waits. The committer's task takes every
//! plan waiting at that moment (up to a batch's worth) and applies them with
//! [`Store::apply_batch`]: one transaction, a savepoint per plan, each plan still guarded by
//! its own claim and applied all or nothing on its own. A plan that is fenced or refused is
//! rolled back to its savepoint and its worker gets the error; its neighbours commit. No worker
//! hears "applied" before the transaction is durable. While one batch commits, the next one
//! gathers, so the busier the daemon, the more plans share each fsync.
//!
//! The task is supervised: a batch that panics (a bug in the host) fails its own plans, as a
//! failed transaction would, and the next batch is committed as usual. Should the task end all
//! the same, [`Committer::ended`] says so, and the daemon stops with that reason rather than
//! run on with every plan failing.

use crate::store::{self, Applied, Claim, Plan, PlanToApply, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A plan waiting for its batch, and where its outcome goes.
struct Waiting {
    claim: Claim,
    plan: Plan,
    ttl: Duration,
    outcome: oneshot::Sender<Outcome>,
}

/// What a plan comes to: what it did, or why it was not written.
type Outcome = store::Result<Applied>;

/// The front of the group-commit task; cheap to clone. The task ends when every clone is gone.
#[derive(Clone, Debug)]
pub struct Committer {
    waiting: mpsc::UnboundedSender<Waiting>,
}

impl Committer {
    /// Starts the task that commits plans for `store`, at most `max_batch` per transaction.
    /// Must be called within a tokio runtime.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> Self {
        Self::start_with(Arc::new(StoreCommits(store)), max_batch)
    }

    fn start_with(commits: Arc<dyn Commits>, max_batch: usize) -> Self {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(commits, queue, max_batch.max(1)));
        Committer { waiting }
    }

    /// Applies `plan` under `claim` in the next batch; returns once that batch committed (or
    /// with the plan's own error, or the batch's).
    pub async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Outcome {
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

    /// Completes if the committer's task ends while this front is still held (it never should:
    /// it outlives every panic of a batch); says why.
    pub async fn ended(&self) -> String {
        self.waiting.closed().await;
        "the group-commit task ended".into()
    }
}

/// What a plan gets when the committer is gone: nothing was written.
fn stopped() -> store::Error {
    batch_failed("the group-commit task has stopped".into(), false)
}

fn batch_failed(message: String, unreachable: bool) -> store::Error {
    store::Error::BatchFailed {
        message,
        unreachable,
    }
}

/// How the committer writes: a plan alone, or several sharing one transaction. The store in
/// the daemon; a seam for tests that make a batch fail or panic.
#[async_trait::async_trait]
trait Commits: Send + Sync {
    /// [`Store::apply`].
    async fn one(&self, plan: PlanToApply<'_>) -> Outcome;
    /// [`Store::apply_batch`].
    async fn batch(&self, plans: &[PlanToApply<'_>]) -> store::Result<Vec<Outcome>>;
}

/// The store's own transactions.
struct StoreCommits(Arc<dyn Store>);

#[async_trait::async_trait]
impl Commits for StoreCommits {
    async fn one(&self, p: PlanToApply<'_>) -> Outcome {
        self.0.apply(p.claim, p.plan, p.ttl).await
    }

    async fn batch(&self, plans: &[PlanToApply<'_>]) -> store::Result<Vec<Outcome>> {
        self.0.apply_batch(plans).await
    }
}

/// Takes what is waiting, commits it as one batch, answers each plan; until every sender is
/// gone. A batch that panics fails its plans and the loop goes on.
async fn commit_batches(
    commits: Arc<dyn Commits>,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let outcomes = crate::panics::caught(commit(commits.as_ref(), &batch))
            .await
            .unwrap_or_else(|panic| {
                tracing::error!(%panic, plans = batch.len(), "a group commit panicked");
                let message = format!("the group commit failed (a bug in the host): {panic}");
                Err(batch_failed(message, false))
            });
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
                    let _ = waiting
                        .outcome
                        .send(Err(batch_failed(message.clone(), unreachable)));
                }
            }
        }
    }
}

/// Commits `batch`: one outcome per plan, or the shared transaction's error.
async fn commit(commits: &dyn Commits, batch: &[Waiting]) -> store::Result<Vec<Outcome>> {
    let plans: Vec<PlanToApply<'_>> = batch
        .iter()
        .map(|w| PlanToApply {
            claim: &w.claim,
            plan: &w.plan,
            ttl: w.ttl,
        })
        .collect();
    if let [alone] = &plans[..] {
        // Nobody to share the commit with: a plain guarded transaction, no savepoint.
        return Ok(vec![commits.one(*alone).await]);
    }
    commits.batch(&plans).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Commits that panic on the first batch and succeed after, counting the plans written.
    #[derive(Default)]
    struct PanicsOnce {
        batches: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Commits for PanicsOnce {
        async fn one(&self, plan: PlanToApply<'_>) -> Outcome {
            Ok(self.batch(&[plan]).await?.remove(0)?)
        }

        async fn batch(&self, plans: &[PlanToApply<'_>]) -> store::Result<Vec<Outcome>> {
            if self.batches.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("injected");
            }
            Ok(plans.iter().map(|_| Ok(Applied::default())).collect())
        }
    }

    fn claim() -> Claim {
        Claim {
            object: ObjectId::Lease(1),
            tenant: "owner:test".into(),
            owner: "test".into(),
            token: 1,
            attempts: 0,
            held_until: 0,
            taken_over: false,
        }
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_its_plans_and_the_next_batch_commits() {
        let committer = Committer::start_with(Arc::new(PanicsOnce::default()), 8);
        let ttl = Duration::from_secs(1);
        let first = committer.apply(&claim(), &Plan::new(), ttl).await;
        match first {
            Err(store::Error::BatchFailed { message, .. }) => {
                assert!(message.contains("injected"), "{message}")
            }
            other => panic!("the panicking batch answered {other:?}"),
        }
        let second = committer.apply(&claim(), &Plan::new(), ttl).await;
        assert!(
            second.is_ok(),
            "the task did not survive the panic: {second:?}"
        );
    }
}
