//! `drydock serve`.

use super::Global;
use crate::daemon::{self, DaemonConfig};
use crate::plugin::{Runtime, RuntimeConfig};
use crate::queue::Queue;
use crate::worker::{Plugins, WorkerConfig};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Update workers running at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Longest sleep between looks at the queue (the backstop for other processes' posts).
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long a worker's claim on an object lasts without a write.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    claim_ttl: Duration,
    /// Wall-clock limit of one blueprint call.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    call_timeout: Duration,
    /// Linear memory one blueprint instance may use, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// How long an active resource must be idle before the allocator may reclaim it.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    reclaim_idle: Duration,
}

pub(super) async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = global.store().await?;
    let runtime = Runtime::new(RuntimeConfig {
        call_timeout: args.call_timeout,
        memory_limit: args.memory_mib << 20,
        ..RuntimeConfig::default()
    })?;
    let config = DaemonConfig {
        workers: args.workers,
        poll: args.poll,
        worker: WorkerConfig {
            claim_ttl: args.claim_ttl,
            reclaim_idle: args.reclaim_idle,
            ..WorkerConfig::default()
        },
        ..DaemonConfig::default()
    };
    eprintln!(
        "drydock serving {} with {} workers (Ctrl-C stops)",
        global.database, config.workers
    );
    let queue = Queue::new(store);
    daemon::run(config, queue, Plugins::new(runtime), shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
