//! What the end-to-end tests and benchmarks share: the guest components built by `build.rs`,
//! the `drydock` binary, throwaway databases (SQLite files, PostgreSQL clusters in
//! [`postgres`]), and daemons they can start, stop and kill.

pub mod api;
pub mod counting;
pub mod git;
pub mod measure;
pub mod postgres;
pub mod shell_run;
pub mod ssh;
pub mod upgrade;

use drydock_host::domain::{LeaseStatus, ResourceStatus};
use drydock_host::store::{self, ObjectId, Store};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The host-pool blueprint, built for `wasm32-wasip2`.
pub const HOST_POOL_WASM: &str = env!("DRYDOCK_WASM_HOST_POOL");
/// A component that misbehaves in the way its config's `mode` names.
pub const MISBEHAVE_WASM: &str = env!("DRYDOCK_WASM_MISBEHAVE");
/// A component built against a future contract version.
pub const FUTURE_CONTRACT_WASM: &str = env!("DRYDOCK_WASM_FUTURE_CONTRACT");
/// A component that counts its hook runs in its logs (type `counted`).
pub const COUNTING_WASM: &str = env!("DRYDOCK_WASM_COUNTING");
/// A component whose every export sleeps in a blocking WASI call.
pub const SLEEPY_WASM: &str = env!("DRYDOCK_WASM_SLEEPY");
/// A component that describes itself with terminal escapes and a schema that is not JSON.
pub const GARBLED_WASM: &str = env!("DRYDOCK_WASM_GARBLED");
/// A component that claims the contract's version with functions of other types.
pub const WRONG_SHAPE_WASM: &str = env!("DRYDOCK_WASM_WRONG_SHAPE");
/// A component that leases a host and runs its config's command there (type `shell`).
pub const SHELL_WASM: &str = env!("DRYDOCK_WASM_SHELL");
/// The working-copy blueprint (type `working-copy`): git working copies on leased hosts.
pub const WORKING_COPY_WASM: &str = env!("DRYDOCK_WASM_WORKING_COPY");

/// Builds the blueprint in `blueprints/<folder>` with its `build.sh` (the Python and JavaScript
/// ones, through their componentizers) into `out`; fails the test, with the reason, if it
/// cannot.
pub fn componentize(folder: &str, out: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let script = workspace.join("blueprints").join(folder).join("build.sh");
    let built = std::process::Command::new("bash")
        .arg(&script)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{} failed (scripts/test.sh installs the componentizers):\n{}",
        script.display(),
        String::from_utf8_lossy(&built.stderr)
    );
}

/// The example host-pool configuration from the README.
pub const HOST_POOL_CONFIG: &str =
    r#"{"hosts": [{"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}}]}"#;
/// The grant the example host-pool configuration needs.
pub const HOST_POOL_GRANT: &str = "local:/tmp/drydock";
/// The authorization a blueprint needs to hold supporting leases on host-pool's hosts.
pub const USE_HOST_POOL: &str = "use:host-pool";

/// The step hooks a complete lifecycle calls, in order (`Harness::lifecycle`, `--lifecycle`).
pub const LIFECYCLE_HOOKS: [&str; 6] = [
    "allocate-resource",
    "activate-resource",
    "acquire-lease",
    "activate-lease",
    "release-lease",
    "destroy-resource",
];

/// `drydock serve` flags that retry a failed run, and use a failing blueprint again, after 20 ms
/// rather than a second (each still doubling): a test that waits for an object to give up
/// takes the same path as a daemon with the defaults, on a faster clock.
pub const FAST_RETRIES: [&str; 4] = ["--retry-backoff", "20ms", "--blueprint-backoff", "20ms"];

/// How long a test waits for a condition before it fails. Generous: CI machines are slow.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The `drydock` binary, freshly built in the same profile as the running test.
///
/// `scripts/test.sh` names it in `DRYDOCK_BINARY`, built before any test starts. Without that
/// (a test run by hand), another package's binary is not rebuilt by `cargo test -p
/// drydock-tests`, so the first call in each test process runs `cargo build --bin drydock`
/// (cargo holds no lock while tests run). That build selects other packages than the
/// workspace's test build, so its features differ and it may compile the host again: minutes
/// on a cold target, which is why the script does it once, before any test's clock starts.
pub fn drydock_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| build_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_binary() -> anyhow::Result<PathBuf> {
    if let Some(built) = std::env::var_os("DRYDOCK_BINARY") {
        let built = PathBuf::from(built);
        anyhow::ensure!(
            built.is_file(),
            "DRYDOCK_BINARY names {}, which is not a file",
            built.display()
        );
        return Ok(built);
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("unexpected test binary path {}", exe.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => anyhow::bail!("no profile directory above {}", exe.display()),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "drydock-host",
            "--bin",
            "drydock",
            "--profile",
            profile,
        ])
        .current_dir(workspace)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "building the drydock binary failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = profile_dir.join("drydock");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing after the build",
        binary.display()
    );
    Ok(binary)
}

/// One compile cache for every test binary and run (`target/component-cache`), so each component
/// is compiled once per build of it. Entries are keyed by the component's digest and the engine's
/// settings and written by rename, so concurrent tests share them safely.
pub fn component_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test binary> (or target/<profile>/<binary>, such as
        // `upgrade-fixtures`): the cache sits beside the profile directories.
        let in_deps = exe.parent().is_some_and(|dir| dir.ends_with("deps"));
        let target = exe.ancestors().nth(if in_deps { 3 } else { 2 }).unwrap();
        let dir = target.join("component-cache");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A fresh SQLite database in a temporary directory, and ways to drive `drydock` against it.
pub struct Env {
    dir: tempfile::TempDir,
    /// `sqlite://…/drydock.db`.
    pub url: String,
    /// The `ssh_config` every `drydock` it runs uses (`DRYDOCK_SSH_CONFIG`), if any.
    ssh_config: Option<PathBuf>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A new, empty database.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
        Env {
            dir,
            url,
            ssh_config: None,
        }
    }

    /// The database at `url` (a fresh PostgreSQL database, say).
    pub fn with_url(url: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Env {
            dir,
            url,
            ssh_config: None,
        }
    }

    /// A new, empty database at `path` (on a file system the test prepared).
    pub fn at(path: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", path.display());
        Env {
            dir,
            url,
            ssh_config: None,
        }
    }

    /// Every `drydock` started from now on reaches SSH hosts through `server`'s client
    /// configuration (which trusts its host key).
    pub fn use_ssh(&mut self, server: &ssh::SshServer) {
        self.ssh_config = Some(server.client_config());
    }

    /// The temporary directory (for config files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `drydock ARGS…` on this database, ready to start (stdin from `/dev/null`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(drydock_binary().unwrap());
        command
            .args(args)
            .env("DRYDOCK_DATABASE_URL", &self.url)
            .env("XDG_CACHE_HOME", component_cache())
            .env("USER", "tester")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(config) = &self.ssh_config {
            command.env(drydock_host::exec::SSH_CONFIG_VAR, config);
        }
        command
    }

    /// Runs `drydock ARGS…` to completion.
    pub async fn drydock(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// Starts `drydock ARGS…` now; await [`Child::wait_with_output`] for its result.
    pub fn start(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `drydock lease request --type TYPE EXTRA…`; the requested leases' ids.
    pub async fn request(&self, resource_type: &str, extra: &[&str]) -> Vec<ObjectId> {
        let mut args = vec!["lease", "request", "--type", resource_type];
        args.extend_from_slice(extra);
        let out = self.ok(&args).await;
        out.lines().map(|l| l.trim().parse().unwrap()).collect()
    }

    /// `drydock lease request --type TYPE EXTRA…` for one lease; its id.
    pub async fn request_one(&self, resource_type: &str, extra: &[&str]) -> ObjectId {
        let leases = self.request(resource_type, extra).await;
        assert_eq!(leases.len(), 1, "{leases:?}");
        leases[0]
    }

    /// Runs `drydock ARGS…` and fails the test, with its output, unless it succeeds; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.drydock(args).await)
    }

    /// [`Env::ok`] as the user `user`: what it requests is owned by `cli:USER`.
    pub async fn ok_as(&self, user: &str, args: &[&str]) -> String {
        let out = self.command(args).env("USER", user).output().await.unwrap();
        succeeded(args, out)
    }

    /// Registers the example host-pool (`HOST_POOL_CONFIG`) with the grant it needs.
    pub async fn add_host_pool(&self) {
        let grants = [HOST_POOL_GRANT];
        self.add_blueprint("host-pool", HOST_POOL_WASM, HOST_POOL_CONFIG, &grants)
            .await;
    }

    /// Registers host-pool with one local host rooted at `root`, granted with `read_only`
    /// paths its execs may read (`ro=`).
    pub async fn add_host_pool_at(&self, root: &Path, read_only: &[&Path]) {
        let host_pool = format!(
            r#"{{"hosts": [{{"name": "local-1", "interface": {{"type": "local", "root": "{}"}}}}]}}"#,
            root.display()
        );
        let mut grant = format!("local:{}", root.display());
        for path in read_only {
            grant.push_str(&format!(",ro={}", path.display()));
        }
        self.add_blueprint("host-pool", HOST_POOL_WASM, &host_pool, &[&grant])
            .await;
    }

    /// Registers host-pool with one local host rooted at `hosts`, whose execs may read the
    /// repositories in `read_only` (the sandbox shows nothing else outside the host), and
    /// working-copy (copies in `hosts/copies`).
    pub async fn add_working_copies(&self, hosts: &Path, read_only: &[&Path]) {
        self.add_host_pool_at(hosts, read_only).await;
        let config = r#"{"directory": "copies"}"#;
        self.add_blueprint("working-copy", WORKING_COPY_WASM, config, &[USE_HOST_POOL])
            .await;
    }

    /// Registers a blueprint from a component, a JSON config and grants (`local:/DIR`…).
    pub async fn add_blueprint(&self, name: &str, wasm: &str, config: &str, grants: &[&str]) {
        let out = self.try_add_blueprint(name, wasm, config, grants).await;
        succeeded(&["blueprint", "add", name], out);
    }

    /// `drydock blueprint add` as [`Env::add_blueprint`] runs it, whatever its outcome.
    pub async fn try_add_blueprint(
        &self,
        name: &str,
        wasm: &str,
        config: &str,
        grants: &[&str],
    ) -> Output {
        self.blueprint_add(name, wasm, config, grants)
            .output()
            .await
            .unwrap()
    }

    /// `drydock blueprint add` as [`Env::add_blueprint`] runs it, ready to start.
    pub fn blueprint_add(&self, name: &str, wasm: &str, config: &str, grants: &[&str]) -> Command {
        let path = self.dir().join(format!("{name}.json"));
        std::fs::write(&path, config).unwrap();
        let mut args = vec![
            "blueprint",
            "add",
            name,
            "--wasm",
            wasm,
            "--config",
            path.to_str().unwrap(),
        ];
        for grant in grants {
            args.extend(["--grant", grant]);
        }
        self.command(&args)
    }

    /// Starts `drydock serve` with quick polling and HTTP on a free loopback port (unless
    /// `extra` says `--poll` or `--listen`), the operator token [`TOKEN`], and any extra
    /// arguments.
    pub fn serve(&self, extra: &[&str]) -> Daemon {
        self.serve_with_env(extra, &[])
    }

    /// [`Env::serve`] with `vars` added to the daemon's environment too (what the shell of
    /// whoever starts a daemon holds: tokens, cloud keys).
    pub fn serve_with_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Daemon {
        let mut args = vec!["serve"];
        if !extra.contains(&"--poll") {
            args.extend(["--poll", "50ms"]);
        }
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .env("DRYDOCK_LOG", "info")
            .env("DRYDOCK_TOKEN", TOKEN)
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (address, url) = tokio::sync::oneshot::channel();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(drain(child.stderr.take().unwrap(), address, lines.clone()));
        Daemon {
            child,
            url: Some(url),
            lines,
        }
    }

    /// The database, opened in this process as a daemon opens it (creating or migrating it).
    pub async fn store(&self) -> Arc<dyn Store> {
        store::open(&self.url, store::Workload::Daemon, store::Access::Migrate)
            .await
            .unwrap()
    }
}

/// `out`'s stdout, failing the test with the whole output unless `drydock ARGS…` succeeded.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "drydock {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The operator token test daemons accept.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Reads a daemon's stderr to the end (so it never blocks on a full pipe), handing over the
/// address it announces and keeping every line.
async fn drain(
    stderr: tokio::process::ChildStderr,
    address: tokio::sync::oneshot::Sender<String>,
    kept: Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut address = Some(address);
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("drydock: listening on ")
            && let Some(sender) = address.take()
        {
            let _ = sender.send(url.to_string());
        }
        kept.lock().unwrap().push(line);
    }
}

/// A running `drydock serve`; killed when dropped.
pub struct Daemon {
    child: Child,
    url: Option<tokio::sync::oneshot::Receiver<String>>,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// The base URL of its HTTP server, such as `http://127.0.0.1:40123`.
    pub async fn url(&mut self) -> String {
        let receiver = self.url.take().expect("url() is asked once");
        tokio::time::timeout(PATIENCE, receiver)
            .await
            .expect("the daemon did not announce its address")
            .expect("the daemon exited before listening")
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon is running")
    }

    /// Sends it a signal by name (`STOP`, `CONT`…).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// What it has written to stderr so far, line by line.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for a graceful exit; returns whether it exited successfully.
    pub async fn terminate(mut self) -> bool {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await;
        matches!(status, Ok(Ok(s)) if s.success())
    }
}

/// A failing test shows what each of its daemons said last: the reason a lease never moved is
/// usually there.
impl Drop for Daemon {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let lines = self.log_lines();
        let pid = self
            .child
            .id()
            .map_or("exited".into(), |pid| pid.to_string());
        eprintln!("--- the last lines of daemon {pid} ---");
        for line in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{line}");
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection of the test's own to the SQLite database at `url` (another process, as far as
/// the daemon can tell), creating the file if it is missing; it waits up to [`PATIENCE`] for a
/// lock.
pub fn sqlite(url: &str) -> rusqlite::Connection {
    let file = store::sqlite::file_of(url).unwrap();
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.busy_timeout(PATIENCE).unwrap();
    conn
}

/// Waits until no command is queued any more: the daemon has consumed them all.
pub async fn wait_commands_consumed(store: &Arc<dyn Store>) {
    let pending = store::CommandFilter {
        target: None,
        pending: true,
    };
    wait_for("every queued command to be consumed", || async {
        store
            .command_list(&pending)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Waits until the lease has `status`; on timeout, says where it stands and why.
pub async fn wait_lease(store: &Arc<dyn Store>, id: ObjectId, status: LeaseStatus) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lease = store.lease_get(id).await.unwrap();
        if lease.status == status {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let work = store.work_item_get(id).await;
            let logs = store.log_list(Some(id), 0, 1000).await.unwrap_or_default();
            let logs: Vec<String> = logs
                .iter()
                .map(|l| format!("{} {}", l.kind, l.message))
                .collect();
            panic!(
                "timed out waiting for {id} to be {status}: it is {}; work item: {work:?}; \
                 log: {logs:#?}",
                lease.status
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `object`'s audit trail holds three steps that `pick` chooses, then checks that
/// those steps came at least the minimum yield (1 s, less 10 ms for rounding) apart; `what`
/// names them in a failure.
pub async fn steps_are_a_second_apart(
    store: &Arc<dyn Store>,
    object: ObjectId,
    what: &str,
    pick: impl Fn(&store::StepRecord) -> bool,
) {
    let times = wait_for(&format!("a few {what}"), || async {
        let steps = store.step_list(object, 0, 1000).await.unwrap();
        let times: Vec<u64> = steps
            .iter()
            .filter(|s| pick(s))
            .map(|s| s.created_at)
            .collect();
        (times.len() >= 3).then_some(times)
    })
    .await;
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 990,
            "one of the {what} came {} ms after the one before, under the 1 s minimum",
            pair[1] - pair[0]
        );
    }
}

/// Waits until the resource has `status`.
pub async fn wait_resource(store: &Arc<dyn Store>, id: ObjectId, status: ResourceStatus) {
    wait_for(&format!("{id} to be {status}"), || async {
        (store.resource_get(id).await.unwrap().status == status).then_some(())
    })
    .await;
}
