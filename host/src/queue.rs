//! The command queue's front door: posting commands and waking the workers.
//!
//! Anyone who wants a release (CLI, HTTP, expiry, a parent resource) calls [`Queue::post`]: the
//! command is inserted and the object woken in one transaction, then the local workers are
//! notified; daemons in other processes hear of it through the store ([`Queue::listen`]), with
//! polling as the backstop. Claims are
//! coalescing: however many posts arrive, an idle object runs once; a post during a run causes
//! exactly one more run (the store keeps `wake_at` set for it).

use crate::store::{self, Claim, Command, CommandKind, ObjectId, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Posts commands and hands out claims. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    notify: Arc<Notify>,
}

impl Queue {
    /// A queue over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Queue {
            store,
            notify: Arc::new(Notify::new()),
        }
    }

    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Queues `kind` for `target` and wakes it; refuses when the object cannot take it.
    pub async fn post(
        &self,
        target: ObjectId,
        kind: CommandKind,
        author: &str,
    ) -> store::Result<Command> {
        let mut commands = self.post_all(&[target], kind, author).await?;
        Ok(commands.remove(0))
    }

    /// Queues `kind` for every target, all or none: if one cannot take it, nothing is queued
    /// and the refusal names it.
    pub async fn post_all(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
        author: &str,
    ) -> store::Result<Vec<Command>> {
        let commands = self.store.command_post(targets, kind, author).await?;
        self.wake_workers();
        Ok(commands)
    }

    /// Tells local workers that something became due.
    pub fn wake_workers(&self) {
        self.notify.notify_one();
    }

    /// Wakes the local workers whenever another process makes something due, until the guard
    /// is dropped.
    pub async fn listen(&self) -> store::Result<store::Listening> {
        self.store.listen(self.notify.clone()).await
    }

    /// Claims up to `limit` due objects for `owner`, shared fairly among their tenants given
    /// what `running` already holds (`scheduler`).
    pub async fn claim(
        &self,
        owner: &str,
        limit: usize,
        ttl: Duration,
        running: &crate::scheduler::Load,
    ) -> store::Result<Vec<Claim>> {
        let claims = self
            .store
            .work_item_claim(owner, limit as i64, ttl, running)
            .await?;
        let taken_over = claims.iter().filter(|c| c.taken_over).count();
        crate::metrics::global().claims_taken_over(taken_over);
        Ok(claims)
    }

    /// Waits until woken (locally or by another process), until the next due time, or at most
    /// `poll` (the backstop for a wake-up that got lost).
    pub async fn wait_for_work(&self, poll: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wait = match self.store.work_item_next_due().await {
            Ok(Some(due)) => {
                let now = self.store.now();
                Duration::from_millis(due.saturating_sub(now)).min(poll)
            }
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(%error, "reading the next due time failed");
                poll
            }
        };
        if wait.is_zero() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
