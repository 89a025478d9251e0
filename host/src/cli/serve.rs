//! `drydock serve`.

use super::Global;
use crate::backoff::Backoff;
use crate::daemon::{self, DaemonConfig};
use crate::plugin::{Runtime, RuntimeConfig, SeedSecret};
use crate::queue::Queue;
use crate::store::{self, Access, Store, Workload};
use crate::web::{self, AppState, auth::Tokens};
use crate::worker::{Plugins, WorkerConfig};
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Update workers running at once; 0 serves only HTTP (a front end for other daemons).
    #[arg(long, default_value_t = daemon::DEFAULT_WORKERS)]
    workers: usize,
    /// Calls one blueprint may have running at once, so that no blueprint takes every worker
    /// (default: a quarter of the workers, at least 1).
    #[arg(long)]
    blueprint_calls: Option<usize>,
    /// Exec actions running at once; they wait in a pool of their own, not on a worker.
    #[arg(long, default_value_t = daemon::DEFAULT_EXEC_SLOTS)]
    exec_slots: usize,
    /// The shortest wait a blueprint's `yield` gets.
    #[arg(long, default_value_t = WorkerConfig::default().min_yield.into())]
    min_yield: humantime::Duration,
    /// Failed runs in a row after which an object breaks with the last error.
    #[arg(long, default_value_t = WorkerConfig::default().max_attempts)]
    max_attempts: u32,
    /// How long an object waits after a failed run before it is tried again; each failure in a
    /// row doubles it, up to five minutes (or this, if longer).
    #[arg(long, default_value_t = WorkerConfig::default().retry.first.into())]
    retry_backoff: humantime::Duration,
    /// How long a blueprint blamed for a failure is left alone; each failure in a row doubles
    /// it, up to five minutes (or this, if longer). `drydock blueprint reset` ends it early.
    #[arg(long, default_value_t = WorkerConfig::default().blueprint_backoff.first.into())]
    blueprint_backoff: humantime::Duration,
    /// How long destroyed leases and resources are kept with their history (`0s` keeps them
    /// forever; live objects keep theirs regardless); `drydock gc` prunes on demand.
    #[arg(long, default_value_t = daemon::DEFAULT_RETENTION.into())]
    retention: humantime::Duration,
    /// The largest component the HTTP API accepts, in MiB.
    #[arg(long, default_value_t = crate::plugin::DEFAULT_MAX_COMPONENT_BYTES >> 20)]
    max_component_mib: usize,
    /// The largest HTTP request body accepted, in MiB (larger ones get 413); by default enough
    /// for a component at --max-component-mib sent base64-encoded.
    #[arg(long)]
    max_body_mib: Option<usize>,
    /// HTTP connections served at once; more wait until one ends.
    #[arg(long, default_value_t = web::ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Commands running through the API at once on this daemon (`drydock exec --server`);
    /// more are refused (429) until one ends.
    #[arg(long, default_value_t = web::ExecLimits::default().per_daemon, value_parser = at_least_one)]
    max_api_execs: usize,
    /// Commands one token may have running through the API at once.
    #[arg(long, default_value_t = web::ExecLimits::default().per_token, value_parser = at_least_one)]
    max_api_execs_per_token: usize,
    /// How long an HTTP client may take to send a request's headers, and how long a
    /// kept-alive connection may sit idle (slow clients cannot hold connections).
    #[arg(long, default_value_t = web::ConnectionLimits::default().header_timeout.into())]
    header_timeout: humantime::Duration,
    /// Longest sleep between looks at the queue (the backstop for other processes' posts).
    #[arg(long, default_value_t = daemon::DEFAULT_POLL.into())]
    poll: humantime::Duration,
    /// The most workers' writes one durable transaction commits together (group commit, each
    /// still all or nothing under its own claim); 1 commits each alone. Default: 64 on SQLite,
    /// whose one writer gains from sharing fsyncs; 1 on PostgreSQL, whose parallel connections
    /// did better without it (BENCHMARKS.md).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    group_commit: Option<u32>,
    /// How long a worker's claim on an object lasts without a write.
    #[arg(long, default_value_t = WorkerConfig::default().claim_ttl.into())]
    claim_ttl: humantime::Duration,
    /// Wall-clock limit of one blueprint call.
    #[arg(long, default_value_t = crate::plugin::DEFAULT_CALL_TIMEOUT.into())]
    call_timeout: humantime::Duration,
    /// Linear memory one blueprint instance may use, in MiB.
    #[arg(long, default_value_t = crate::plugin::DEFAULT_MEMORY_LIMIT >> 20)]
    memory_mib: usize,
    /// How long a lease waiting for capacity sleeps at most; it is woken as soon as capacity of
    /// its type appears, so this is only the backstop.
    #[arg(long, default_value_t = WorkerConfig::default().resource_wait.into())]
    capacity_wait: humantime::Duration,
    /// How long an active resource must be idle before the allocator may reclaim it.
    #[arg(long, default_value_t = WorkerConfig::default().reclaim_idle.into())]
    reclaim_idle: humantime::Duration,
    /// Where the web UI and HTTP API listen (`off` to serve no HTTP). Addresses other than
    /// loopback need a token.
    #[arg(long, default_value = "127.0.0.1:6080")]
    listen: String,
    /// Operator tokens for the web UI and API: `TOKEN` or `NAME TOKEN` per line (wins over
    /// DRYDOCK_TOKEN). Without either, a token is made up and printed.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// One operator token (prefer --token-file: the environment is visible to other processes).
    #[arg(long, env = "DRYDOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Let the lists and show reads of blueprints, leases and resources go without a token:
    /// the API's, and the web pages (which otherwise ask to sign in first). Logs, steps and
    /// commands still need one. Tokens: `drydock token create`.
    #[arg(long)]
    public_reads: bool,
    /// Also serve `/metrics` alone, with no token, on this address (one only the scraper
    /// reaches). On `--listen`, `/metrics` needs a token, as every read does.
    #[arg(long)]
    metrics_listen: Option<String>,
    #[command(flatten)]
    confine: super::confine::ConfineArgs,
}

/// Plans per transaction when `--group-commit` is not given, by backend: 64 on SQLite (one
/// writer, so sharing an fsync is pure gain), 1 on PostgreSQL (measured faster with one
/// transaction per plan on its parallel connections, up to two daemons).
fn default_group_commit(database: &str) -> usize {
    if database.starts_with("sqlite:") {
        64
    } else {
        1
    }
}

pub(super) async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global).await?;
    let confinement = args
        .confine
        .detect(global.database(), args.token_file.as_deref());
    match &confinement {
        crate::exec::Confinement::Sandboxed(sandbox) => {
            eprintln!("drydock: {}", confinement.describe());
            if let Some(why) = sandbox.caps_missing() {
                tracing::warn!(%why, "local execs run without process and memory caps");
            }
        }
        _ => eprintln!("drydock: WARNING: {}", confinement.describe()),
    }
    if let Some(warning) = confinement.warning() {
        web::warn_about_execs(warning);
    }
    // Made at the first start and kept in the store: a recorded call gets the same random
    // bytes again on this installation, and nobody without the database can recompute them.
    let seed_secret = store
        .installation_secret()
        .await
        .context("reading the installation's seed secret")?;
    let runtime = Runtime::new(RuntimeConfig {
        call_timeout: *args.call_timeout,
        memory_limit: args.memory_mib << 20,
        max_component_bytes: args.max_component_mib << 20,
        seed_secret: SeedSecret::new(seed_secret),
        ..RuntimeConfig::default()
    })?;
    let config = DaemonConfig {
        workers: args.workers,
        exec_slots: args.exec_slots,
        exec_guard: Some(std::env::current_exe().context("finding the drydock binary")?),
        exec_confinement: confinement.clone(),
        poll: *args.poll,
        retention: (!args.retention.is_zero()).then_some(*args.retention),
        worker: worker_config(&args),
        group_commit: args
            .group_commit
            .map_or_else(|| default_group_commit(global.database()), |n| n as usize),
        ..DaemonConfig::default()
    };
    let blueprint_calls = args.blueprint_calls.unwrap_or(args.workers / 4).max(1);
    eprintln!(
        "drydock serving {} with {} workers (Ctrl-C stops)",
        global.database(),
        config.workers
    );
    let queue = Queue::new(store);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // One cache of compiled components for the workers and the API (its execs, its checks).
    let plugins = Plugins::new(runtime, blueprint_calls);
    let web = match args.listen.as_str() {
        "off" => None,
        addr => {
            let shared = (queue.clone(), plugins.clone(), confinement);
            Some(start_web(addr, &args, shared, &stopped).await?)
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    if config.workers == 0 {
        stopping(stopped).await;
    } else {
        daemon::run(config, queue, plugins, stopping(stopped)).await?;
    }
    if let Some(web) = web {
        web.await??;
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTTP body limit in bytes: as asked, or room for the largest component in base64 plus
/// a MiB for the rest of the request.
fn max_body_bytes(args: &ServeArgs) -> usize {
    let mib = args
        .max_body_mib
        .unwrap_or(args.max_component_mib.div_ceil(3) * 4 + 1);
    mib << 20
}

/// Opens the database, waiting while it cannot be reached: a daemon started before its
/// database, or while it restarts, comes up when the database does (SIGINT or SIGTERM give up).
/// What waiting cannot fix (a bad URL, a schema newer than this build) ends it at once.
async fn open_store(global: &Global) -> anyhow::Result<Arc<dyn Store>> {
    let mut failures = 0;
    loop {
        let error = match global.open(Workload::Daemon, Access::Migrate).await {
            Ok(store) => return Ok(store),
            Err(error) => error,
        };
        let unreachable = error.chain().any(|cause| {
            cause
                .downcast_ref::<store::Error>()
                .is_some_and(store::Error::is_unreachable)
        });
        if !unreachable {
            return Err(error);
        }
        failures += 1;
        let pause = OPEN_BACKOFF.delay(failures);
        tracing::warn!(error = %format!("{error:#}"), ?pause, "cannot reach the database yet; waiting for it");
        tokio::select! {
            _ = shutdown_signal() => anyhow::bail!("stopped while waiting for the database: {error:#}"),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The workers' settings the flags give: [`WorkerConfig::default`]'s where none is given.
fn worker_config(args: &ServeArgs) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    WorkerConfig {
        claim_ttl: *args.claim_ttl,
        reclaim_idle: *args.reclaim_idle,
        resource_wait: *args.capacity_wait,
        min_yield: *args.min_yield,
        max_attempts: args.max_attempts.max(1),
        retry: starting_at(defaults.retry, *args.retry_backoff),
        blueprint_backoff: starting_at(defaults.blueprint_backoff, *args.blueprint_backoff),
        ..defaults
    }
}

/// `backoff` starting at `first`: its cap stays, unless `first` is longer.
fn starting_at(backoff: Backoff, first: Duration) -> Backoff {
    Backoff::new(first, backoff.cap.max(first))
}

/// A count of at least 1, for a limit that 0 would turn into "never".
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 would allow none: give at least 1".into()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

/// The pauses between attempts to open an unreachable database.
const OPEN_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Completes once `stopped` says the daemon stops.
async fn stopping(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// An address to listen on, from the flag `flag`.
fn listen_address(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("{flag} {addr:?} is not an address such as 127.0.0.1:6080"))
}

/// Binds the HTTP server (and the metrics listener, if asked for) and starts them, until
/// `stopped`; returns the task that ends with them.
async fn start_web(
    addr: &str,
    args: &ServeArgs,
    (queue, plugins, confinement): (Queue, Plugins, crate::exec::Confinement),
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let addr = listen_address("--listen", addr)?;
    let tokens = match (&args.token_file, &args.token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(Tokens::parse(&text).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, Some(token)) => Some(Tokens::single(token).context("DRYDOCK_TOKEN")?),
        (None, None) => None,
    };
    web::check_listen(&addr, tokens.is_some())?;
    let tokens = tokens.unwrap_or_else(|| {
        let (tokens, token) = Tokens::generate();
        eprintln!("no operator token configured; this run's token is {token}");
        tokens
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!("drydock: listening on http://{}", listener.local_addr()?);
    let state = AppState {
        queue,
        plugins,
        confinement,
        tokens: Arc::new(tokens),
        public_reads: args.public_reads,
        throttle: Arc::default(),
        exec_slots: Arc::new(web::ExecSlots::new(web::ExecLimits {
            per_daemon: args.max_api_execs,
            per_token: args.max_api_execs_per_token,
        })),
        max_body: max_body_bytes(args),
        counts: Arc::default(),
    };
    let limits = web::ConnectionLimits {
        max_connections: args.max_connections,
        header_timeout: *args.header_timeout,
    };
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            let addr = listen_address("--metrics-listen", addr)?;
            let metrics = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for /metrics"))?;
            eprintln!(
                "drydock: metrics on http://{}/metrics",
                metrics.local_addr()?
            );
            let app = web::metrics_router(state.clone());
            let stop = stopping(stopped.clone());
            Some(tokio::spawn(web::serve(metrics, app, limits, stop)))
        }
        None => None,
    };
    let app = web::router(state);
    let main = tokio::spawn(web::serve(listener, app, limits, stopping(stopped.clone())));
    Ok(tokio::spawn(async move {
        main.await??;
        if let Some(metrics) = metrics {
            metrics.await??;
        }
        Ok(())
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `drydock serve`'s flags alone.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn serve_without_flags_runs_on_the_default_impls() {
        let args = Serve::parse_from(["serve"]).args;
        let (worker, daemon) = (WorkerConfig::default(), DaemonConfig::default());
        assert_eq!(worker_config(&args), worker);
        assert_eq!(args.workers, daemon.workers);
        assert_eq!(args.exec_slots, daemon.exec_slots);
        assert_eq!(*args.poll, daemon.poll);
        assert_eq!(Some(*args.retention), daemon.retention);
        let runtime = RuntimeConfig::default();
        assert_eq!(*args.call_timeout, runtime.call_timeout);
        assert_eq!(args.memory_mib << 20, runtime.memory_limit);
        assert_eq!(args.max_component_mib << 20, runtime.max_component_bytes);
        let limits = web::ConnectionLimits::default();
        assert_eq!(*args.header_timeout, limits.header_timeout);
        assert_eq!(args.max_connections, limits.max_connections);
    }

    #[test]
    fn a_back_off_flag_moves_its_start_and_keeps_the_cap_unless_longer() {
        let args = Serve::parse_from([
            "serve",
            "--retry-backoff",
            "2s",
            "--blueprint-backoff",
            "10m",
        ])
        .args;
        let config = worker_config(&args);
        assert_eq!(
            config.retry,
            Backoff::new(Duration::from_secs(2), Duration::from_secs(300))
        );
        let long = Duration::from_secs(600);
        assert_eq!(config.blueprint_backoff, Backoff::new(long, long));
    }
}
