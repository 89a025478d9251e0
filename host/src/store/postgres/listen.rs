//! Listening for wake-ups on PostgreSQL: a dedicated connection `LISTEN`s on the wake channel
//! and notifies the daemon's dispatcher for every notification.
//!
//! Notifications are a hint. While the connection is down nothing is heard, so every
//! (re)connection also wakes the dispatcher once, to catch up on what was posted meanwhile;
//! failures back off ([`RECONNECT`]) and the poll covers the gap.

use super::statements::WAKE_CHANNEL;
use crate::backoff::Backoff;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The pauses between attempts to reconnect.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The task that listens until aborted.
pub(super) fn spawn(options: PgConnectOptions, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            match connect(&options).await {
                Ok(mut listener) => {
                    if failures > 0 {
                        tracing::info!("listening for wake-ups again");
                    }
                    failures = 0;
                    wake.notify_one();
                    loop {
                        match listener.try_recv().await {
                            // A notification, or a lost connection that came back: either way
                            // something may be due.
                            Ok(_) => wake.notify_one(),
                            Err(error) => {
                                tracing::warn!(%error, "wake-up listener lost its connection");
                                break;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for wake-ups; relying on the poll");
                }
            }
            failures += 1;
            let pause = RECONNECT.delay(failures);
            tokio::time::sleep(pause).await;
        }
    })
}

/// A listener on its own connection, subscribed to the wake channel.
async fn connect(options: &PgConnectOptions) -> sqlx::Result<PgListener> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(WAKE_CHANNEL).await?;
    Ok(listener)
}
