//! The `drydock` command line: argument parsing and one function per subcommand.
//!
//! Every command but `serve` and `blueprint check` works directly on the database, so it works
//! whether or not a daemon runs: a release only queues a command, which the daemon (now or when
//! it next starts) consumes. Read commands print text, or one JSON document with `--json`.
//! Every failure exits non-zero with a message naming what was wrong.
//!
//! With `--server URL` (or `DRYDOCK_SERVER`) the lease, resource, blueprint, command, log and
//! exec commands go through that daemon's HTTP API instead, with a token ([`remote`]): the same
//! commands, the same output, on a machine with no access to the database. They are written
//! once, against [`service::Service`].
//!
//! Each command opens the database for what it does ([`Access`]): reads never create, lock or
//! change it; writes may create a new database but never upgrade an existing one; only `serve`
//! and `migrate` change the schema.

mod blueprint;
mod command;
mod config;
mod confine;
mod daemons;
mod doctor;
mod exec;
mod lease;
mod login;
mod output;
mod remote;
mod resource;
mod serve;
mod service;
mod token;

use crate::store::{self, Access, Store, Workload};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;

/// Drydock: leases on resources made by sandboxed WebAssembly blueprints.
#[derive(Debug, Parser)]
#[command(name = "drydock", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Commands,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
struct Global {
    /// The database: `sqlite://PATH` (one host) or `postgres://USER@HOST/DATABASE` (daemons on
    /// several hosts share it); `sqlite://drydock.db` when not given. Given, it wins over the
    /// current context of the client's configuration.
    #[arg(long, global = true, env = "DRYDOCK_DATABASE_URL")]
    database: Option<String>,
    /// A daemon's URL, such as `https://drydock.example.com`: lease, resource, blueprint,
    /// command, log and exec commands go through its HTTP API with a token (`DRYDOCK_TOKEN` or
    /// `--token-file`) rather than to the database.
    #[arg(long, global = true, env = "DRYDOCK_SERVER")]
    server: Option<String>,
    /// A context of the client's configuration (`drydock login` makes them; `drydock context
    /// list`): its server and token. Without `--server`, `--context` or `--database`, the
    /// current context is used, if there is one.
    #[arg(long, global = true, env = "DRYDOCK_CONTEXT")]
    context: Option<String>,
    /// With a server: a file holding the token to send (instead of `DRYDOCK_TOKEN` or the
    /// context's). Given before the subcommand: `drydock --token-file F lease list`.
    #[arg(long, env = "DRYDOCK_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
}

/// The database when none is named.
const DEFAULT_DATABASE: &str = "sqlite://drydock.db";

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the daemon: update workers that consume the command queue.
    Serve(Box<serve::ServeArgs>),
    /// Blueprints: register, inspect, enable and disable them.
    #[command(subcommand)]
    Blueprint(blueprint::BlueprintCommand),
    /// Leases: request, inspect and release them.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Resources: inspect, release and reclaim them.
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
    /// The command queue.
    #[command(subcommand)]
    Command(command::CommandCommand),
    /// Show log entries, of one object or all.
    Log(command::LogArgs),
    /// The daemons serving the database.
    #[command(subcommand)]
    Daemon(daemons::DaemonCommand),
    /// API tokens with roles: make, list and revoke them.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run a command on the resource an active lease holds: `drydock exec --lease L1 -- make`.
    Exec(exec::ExecArgs),
    /// Check a token against a server (`--server URL`) and keep both as a context of the
    /// client's configuration, the current one from now on; the token comes from
    /// `--token-file`, `DRYDOCK_TOKEN` or standard input.
    Login(login::LoginArgs),
    /// The client's contexts: list them, or pick the current one.
    #[command(subcommand)]
    Context(login::ContextCommand),
    /// Remove what finished long ago: leases and resources destroyed before the retention, with
    /// their log entries, steps and commands (the daemon does this hourly). Live objects and
    /// blueprints keep their whole history.
    Gc(command::GcArgs),
    /// Create the database, or upgrade its schema to this version's (`serve` does too; no other
    /// command changes the schema).
    Migrate,
    /// Check what the daemon needs: the database, the blueprints' grants, the confinement of
    /// local execs, ssh. One line each (OK, WARN, FAIL); exits non-zero when one fails.
    Doctor(doctor::DoctorArgs),
    /// Run a command under guard (the daemon starts execs this way; see `exec::guard`).
    #[command(hide = true)]
    ExecGuard(crate::exec::guard::GuardArgs),
}

/// Parses the process arguments, runs the command and maps errors to a non-zero exit.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    if let Commands::ExecGuard(args) = cli.command {
        // Started by the daemon with what it hands on to bubblewrap alone: nothing to seal.
        return guard(args);
    }
    if !matches!(cli.command, Commands::Serve(_)) {
        // A command whose output is cut short (`drydock lease list | head -1`) ends quietly, as
        // Unix tools do, rather than report a broken pipe. The daemon keeps ignoring SIGPIPE:
        // a client that hangs up is an error on that connection alone.
        // SAFETY: sets a signal's disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Whatever started this process may have left it descriptors: none may reach an exec.
    if let Err(error) = crate::exec::descriptors::seal_inherited() {
        eprintln!("error: marking inherited descriptors close-on-exec: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "error: {}",
                crate::text::escape_lines(&format!("{error:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// `drydock exec-guard`: a small runtime of its own, and the command's exit code. The process
/// exits at once: the thread reading renewals from stdin may still be blocked in a read.
fn guard(args: crate::exec::guard::GuardArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => std::process::exit(runtime.block_on(crate::exec::guard::run(args))),
        Err(error) => {
            eprintln!("error: starting the exec guard: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Commands::Serve(args) => serve::run(&global, *args).await,
        Commands::Blueprint(command) => blueprint::run(&global, command).await,
        Commands::Lease(command) => lease::run(&global, command).await,
        Commands::Resource(command) => resource::run(&global, command).await,
        Commands::Command(command) => command::run(&global, command).await,
        Commands::Log(args) => command::log(&global, args).await,
        Commands::Token(command) => token::run(&global, command).await,
        Commands::Daemon(command) => daemons::run(&global, command).await,
        Commands::Exec(args) => exec::run(&global, args).await,
        Commands::Login(args) => login::login(&global, args).await,
        Commands::Context(command) => login::context(command),
        Commands::Gc(args) => command::gc(&global, args).await,
        Commands::Migrate => migrate(&global).await,
        Commands::Doctor(args) => doctor::run(&global, args).await,
        Commands::ExecGuard(_) => unreachable!("handled before the runtime starts"),
    }
}

/// `drydock migrate`: brings the database to this version's schema.
async fn migrate(global: &Global) -> anyhow::Result<ExitCode> {
    global.store(Access::Migrate).await?;
    println!("the database's schema is up to date");
    Ok(ExitCode::SUCCESS)
}

impl Global {
    /// The database, for a one-shot command that does `access` to it; refused when a server
    /// applies, for a command that works on the database alone.
    async fn store(&self, access: Access) -> anyhow::Result<Arc<dyn Store>> {
        if let Some((server, _)) = self.server_and_token_file()? {
            anyhow::bail!(
                "this command works on the database itself, not through a server ({server}, \
                 from --server, DRYDOCK_SERVER or a context): run it where the database is, \
                 with --database"
            );
        }
        self.open(Workload::Command, access).await
    }

    /// The database's URL: as given, or the default.
    fn database(&self) -> &str {
        self.database.as_deref().unwrap_or(DEFAULT_DATABASE)
    }

    /// Where a remote-capable command does its work: the server's API when one applies, else
    /// the database, opened for `access`.
    async fn service(&self, access: Access) -> anyhow::Result<Box<dyn service::Service>> {
        Ok(match self.remote()? {
            Some(remote) => Box::new(remote),
            None => Box::new(service::Direct::new(self.store(access).await?)),
        })
    }

    /// The server's API, with the token to send, when one applies: `--token-file`; else, for a
    /// server named by `--server` or `DRYDOCK_SERVER`, `DRYDOCK_TOKEN`; for a context's, its
    /// own token (never a `DRYDOCK_TOKEN` meant for another server).
    fn remote(&self) -> anyhow::Result<Option<remote::Remote>> {
        let Some((server, context_token)) = self.server_and_token_file()? else {
            return Ok(None);
        };
        let token = match (&self.token_file, &self.server) {
            (Some(path), _) => Some(read_token_file(path)?),
            (None, Some(_)) => self.token()?,
            (None, None) => context_token.as_deref().map(read_token_file).transpose()?,
        };
        Ok(Some(remote::Remote::new(&server, token)?))
    }

    /// The server that applies, and its context's token file: `--server`; else `--context`;
    /// else, unless a database is named, the current context; else none (the database).
    fn server_and_token_file(
        &self,
    ) -> anyhow::Result<Option<(String, Option<std::path::PathBuf>)>> {
        if let Some(server) = &self.server {
            return Ok(Some((server.clone(), None)));
        }
        if self.context.is_none() && self.database.is_some() {
            return Ok(None);
        }
        let Some(path) = config::path() else {
            match &self.context {
                Some(name) => anyhow::bail!(
                    "no configuration to find the context {name:?} in: set HOME, \
                     XDG_CONFIG_HOME or DRYDOCK_CONFIG"
                ),
                None => return Ok(None),
            }
        };
        let config = config::Config::load(&path)?;
        Ok(config
            .context(self.context.as_deref())?
            .map(|(_, context)| (context.server.clone(), context.token_file.clone())))
    }

    /// The token given for this command: `--token-file`, else `DRYDOCK_TOKEN`.
    fn token(&self) -> anyhow::Result<Option<String>> {
        match &self.token_file {
            Some(path) => read_token_file(path).map(Some),
            None => Ok(std::env::var("DRYDOCK_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())),
        }
    }

    /// The database, opened for `workload` and `access`; says so when it makes a new one.
    async fn open(&self, workload: Workload, access: Access) -> anyhow::Result<Arc<dyn Store>> {
        use anyhow::Context as _;
        let creates = matches!(access, Access::Setup | Access::Migrate);
        let database = self.database();
        let new_file = sqlite_file(database).filter(|file| creates && !file.exists());
        let store = store::open(database, workload, access)
            .await
            .with_context(|| format!("opening the database {database}"))?;
        if let Some(file) = new_file {
            eprintln!("created a new database at {}", file.display());
        }
        Ok(store)
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DRYDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A token from its file: the first line, trimmed.
fn read_token_file(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    match text.lines().next().map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => Ok(token.to_string()),
        None => anyhow::bail!("the token file {} is empty", path.display()),
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The file of a SQLite database URL, made absolute; `None` for PostgreSQL or in memory.
fn sqlite_file(database: &str) -> Option<std::path::PathBuf> {
    let file = crate::store::sqlite::file_of(database).ok()?;
    std::path::absolute(file).ok()
}

/// Who is acting, for command authors: `cli:$USER`.
fn author() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}
