//! Running commands through an authorised command interface: blueprints' `exec` actions, and
//! `drydock exec`.
//!
//! Runs happen outside any transaction; their results are recorded under the fence afterwards.
//! They are at-least-once across crashes, and never twice at once: each exec runs in its own
//! process group, which a timeout, a lost claim or a shutdown kills whole (grandchildren too).
//! In the daemon the group is started under a [`guard`] process (`drydock exec-guard`) that
//! kills it when the daemon dies (kill -9) or stops renewing its claim (SIGSTOP, a hung
//! process), before any other worker may claim the object and run the exec again.
//!
//! A local command runs in the sandbox [`confine`] describes, in one place: its own PID
//! namespace (nothing it starts outlives it, however it detaches), a mount namespace where its
//! root is the only lasting writable path and the daemon's files are not there, caps on its
//! processes and memory (`cgroup`). It starts in a directory opened beneath its grant without
//! following any link (`dir`).
//!
//! Output is read while the command runs and capped as it is read ([`OUTPUT_LIMIT`] per
//! stream): a command that prints gigabytes costs the daemon 64 KiB. Or it is handed on as it
//! comes ([`stream`], `drydock exec` over the API), at the pace the receiver takes it; the
//! command is stopped when the receiver goes away.
//!
//! An exec inherits nothing of the daemon's environment (its tokens, database URLs, cloud
//! keys): the process started (the command, the local `ssh` of a remote one, or the guard that
//! starts either) gets [`environment`] alone.

mod cgroup;
pub mod confine;
pub mod descriptors;
mod dir;
pub mod guard;
pub mod outbound;
pub mod terminal;
mod user;

pub use confine::Confinement;
pub use user::RunAs;

use crate::domain::{CommandInterface, ExecRequest, ExecResult, SupportingLease};
use crate::grant::Authorized;
use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Milliseconds on `CLOCK_BOOTTIME`: monotonic, shared by the host's processes, counting
/// suspended time, never stepped. Exec deadlines and the daemon's claims are both on it.
pub fn boottime_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec * 1000 + t.tv_nsec / 1_000_000
}

/// Bytes kept of each of stdout and stderr.
pub const OUTPUT_LIMIT: usize = 64 << 10;

/// How an exec is tied to the claim it runs under: the guard program, the time (boot clock,
/// milliseconds) until which the claim is surely held, renewed as the claim is, the margin
/// the exec keeps from it, and how a stalled store is waited out (see [`guard`]).
pub struct Watchdog {
    /// The `drydock` binary, run as `drydock exec-guard`.
    pub program: PathBuf,
    /// Until when the claim is surely held.
    pub held_until: watch::Receiver<i64>,
    /// How long before that the guard stops the exec.
    pub margin: Duration,
    /// How often the daemon repeats the deadline to the guard, so that it is known alive.
    pub keepalive: Duration,
    /// How long a local exec stays paused past its deadline, waiting for the claim to be
    /// confirmed, before it is killed.
    pub pause_limit: Duration,
}

impl Watchdog {
    fn deadline(&self, held_until: i64) -> i64 {
        held_until - self.margin.as_millis() as i64
    }

    /// Whether the claim is still vouched for now: the deadline lies ahead.
    fn vouches_now(&self) -> bool {
        boottime_ms() < self.deadline(*self.held_until.borrow())
    }
}

/// An exec that ended while its claim could not be vouched for (the store or the daemon
/// stalled past the deadline, and the guard stopped it): what it printed and its status may be
/// the kill's, not the command's, so they are not shown as its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the exec ended after its claim could no longer be confirmed (a stalled store or daemon); \
     it runs again under the next claim"
)]
pub struct Interrupted;

/// A command ready to start: program, arguments, its whole environment, and for a local
/// interface the directory it starts in (opened, so nothing can be swapped before it starts),
/// or, confined, the root its sandbox binds and the cgroup that caps it.
pub struct Prepared {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    /// The user it runs as, when its grant names one (`user`).
    run_as: Option<RunAs>,
    /// Unconfined: the directory it starts in.
    dir: Option<OwnedFd>,
    /// Confined: the root and what else the sandbox shows, inherited by bubblewrap (which binds
    /// them and closes them).
    handed: Vec<OwnedFd>,
    /// Confined: its caps, removed once it has ended (so kept until then).
    cgroup: Option<cgroup::ExecCgroup>,
    /// Confined with `net=outbound`: its network, connected once it has started.
    network: Option<outbound::Connection>,
    /// Its stdin must be a pipe held open until it exits ([`Stdin::Tether`] over SSH).
    tethered: bool,
}

/// What a command's stdin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// A pseudo-terminal of the exec's own (`drydock exec` at a terminal, which relays the
    /// caller's to it: [`terminal::Terminal`]): the command's controlling terminal, so nothing
    /// it types there (`TIOCSTI`) reaches the caller's shell.
    Terminal,
    /// The caller's stdio, not a terminal (`drydock exec` in a pipe or a script), passed
    /// through; the command runs in a session of its own, with no controlling terminal.
    Passed,
    /// Nothing (a blueprint's exec). Over SSH it carries the exec's life instead: the local
    /// `ssh` gets a pipe that stays open until it exits, and the remote side kills the
    /// command's process group when that pipe closes, so a timeout, a lost claim or a dead
    /// daemon (which all kill the local `ssh`) kill the remote command too.
    Tether,
}

/// The `PATH` of every exec: the system's directories, fixed, rather than the daemon's (which
/// may lead into its user's home, and would make a command's meaning depend on who started the
/// daemon).
pub const EXEC_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The locale of every exec (`LANG` and `LC_ALL`): UTF-8, and the same wherever it runs.
pub const EXEC_LOCALE: &str = "C.UTF-8";

/// The lease an exec runs through and the resource that lease holds, where known: the command
/// sees them as `DRYDOCK_LEASE` and `DRYDOCK_RESOURCE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// The lease, such as `L3`.
    pub lease: Option<String>,
    /// The resource it holds, such as `R2`.
    pub resource: Option<String>,
}

impl From<&SupportingLease> for Ids {
    /// A blueprint's exec runs through one of its resource's supporting leases.
    fn from(supporting: &SupportingLease) -> Self {
        Ids {
            lease: Some(supporting.lease.id.clone()),
            resource: supporting.lease.resource_id.clone(),
        }
    }
}

/// The whole environment of an exec, nothing inherited: [`EXEC_PATH`], [`EXEC_LOCALE`] as
/// `LANG` and `LC_ALL`, then for a local interface the variables its grant sets (`env=`, which
/// may replace those three) and `HOME` (its root), `DRYDOCK_LEASE` and `DRYDOCK_RESOURCE`
/// (`ids`), and `TERM` only when `drydock exec` relays a terminal. [`prepare`] adds
/// `PWD`, a local exec's working directory (the sandbox sets it anyway).
pub fn environment(reach: &Authorized, ids: &Ids, stdin: Stdin) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = [
        ("PATH", EXEC_PATH),
        ("LANG", EXEC_LOCALE),
        ("LC_ALL", EXEC_LOCALE),
    ]
    .map(|(name, value)| (name.into(), value.into()))
    .into();
    let mut set = |name: &str, value: OsString| match env.iter_mut().find(|(n, _)| n == name) {
        Some(old) => old.1 = value,
        None => env.push((name.into(), value)),
    };
    if let CommandInterface::Local { root } = &reach.interface {
        for (name, value) in &reach.options.env {
            set(name, value.into());
        }
        set("HOME", root.into());
    }
    if let Some(id) = &ids.lease {
        set("DRYDOCK_LEASE", id.into());
    }
    if let Some(id) = &ids.resource {
        set("DRYDOCK_RESOURCE", id.into());
    }
    if stdin == Stdin::Terminal
        && let Some(term) = std::env::var_os("TERM")
    {
        set("TERM", term);
    }
    env
}

/// The exit code of a command that could not be found, as a shell gives it.
pub const NOT_FOUND: i32 = 127;

/// Why the program of `argv` cannot run through the local interface of `reach`: a bare name
/// that no directory of the exec's `PATH` (the grant's `env=PATH=…`, else [`EXEC_PATH`]) holds.
/// Checked before the sandbox starts, whose directories are the machine's at the same paths,
/// so that a missing command fails as a shell says it ([`NOT_FOUND`], `command not found`)
/// rather than in bubblewrap's words. `None` for a path, an SSH interface, or a program found.
pub fn missing_program(reach: &Authorized, argv: &[String]) -> Option<String> {
    let CommandInterface::Local { .. } = reach.interface else {
        return None;
    };
    let program = argv.first().filter(|p| !p.contains('/'))?;
    let path = (reach.options.env.iter().rev())
        .find(|(name, _)| name == "PATH")
        .map_or(EXEC_PATH, |(_, value)| value.as_str());
    let found = path.split(':').any(|dir| {
        let candidate = std::path::Path::new(dir).join(program);
        std::fs::metadata(&candidate).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    });
    (!found).then(|| format!("{program}: command not found (looked in {path})"))
}

/// The environment variable naming an `ssh_config(5)` file for every SSH exec (`ssh -F`): known
/// hosts, jump hosts, timeouts. Without it, ssh reads the daemon user's own configuration.
pub const SSH_CONFIG_VAR: &str = "DRYDOCK_SSH_CONFIG";

/// Prepares `argv` (in `cwd`, relative to the interface's root) through `reach`: for `local`
/// as `confinement` says (in the sandbox, directly, or not at all), through `ssh` for `ssh`;
/// with the [`environment`] of an exec through `ids`.
pub fn prepare(
    reach: &Authorized,
    argv: &[String],
    cwd: Option<&str>,
    ids: &Ids,
    stdin: Stdin,
    confinement: &Confinement,
) -> Result<Prepared, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    let mut env = environment(reach, ids, stdin);
    match &reach.interface {
        CommandInterface::Local { root } => {
            let anchor = reach
                .anchor
                .as_deref()
                .ok_or("the local interface has no anchor")?;
            if let Confinement::Refused(why) = confinement {
                return Err(format!(
                    "local execs are refused: {why}; see `drydock doctor`, or pass \
                     --unconfined-exec (to `drydock serve`, `drydock exec`) to run them \
                     unconfined"
                ));
            }
            let run_as = reach.options.user.as_deref().map(RunAs::resolve);
            let run_as = run_as.transpose()?;
            let opened = dir::open(anchor, root, cwd)?;
            env.push(("PWD".into(), opened.cwd_path.clone().into()));
            let Confinement::Sandboxed(sandbox) = confinement else {
                return Ok(Prepared {
                    program: program.into(),
                    args: args.iter().map(OsString::from).collect(),
                    env,
                    run_as,
                    dir: Some(opened.cwd),
                    handed: Vec::new(),
                    cgroup: None,
                    network: None,
                    tethered: false,
                });
            };
            // A terminal of its own is its controlling terminal, in the session the caller
            // made for it; anything else is cut off from every terminal.
            let new_session = stdin != Stdin::Terminal;
            let wrapped = sandbox.wrap(argv, root, &opened, &reach.options, new_session)?;
            Ok(Prepared {
                program: wrapped.program,
                args: wrapped.args,
                env,
                run_as,
                dir: None,
                handed: std::iter::once(opened.root).chain(wrapped.fds).collect(),
                cgroup: wrapped.cgroup,
                network: wrapped.network,
                tethered: false,
            })
        }
        CommandInterface::Ssh {
            host,
            port,
            user,
            key_path,
            root,
        } => {
            let dir = match (root, cwd) {
                (Some(root), Some(cwd)) => Some(format!("{root}/{cwd}")),
                (root, cwd) => root.as_deref().or(cwd).map(String::from),
            };
            let mut args: Vec<OsString> = Vec::new();
            if let Some(config) = std::env::var_os(SSH_CONFIG_VAR) {
                args.extend(["-F".into(), config]);
            }
            let target = format!("{user}@{host}");
            let port = port.to_string();
            let remote = remote_line(argv, dir.as_deref(), stdin);
            let fixed = [
                "-o",
                "BatchMode=yes",
                "-i",
                key_path,
                "-p",
                &port,
                &target,
                "--",
            ];
            args.extend(fixed.iter().map(OsString::from));
            args.push(remote.into());
            Ok(Prepared {
                program: "ssh".into(),
                args,
                env,
                run_as: None,
                dir: None,
                handed: Vec::new(),
                cgroup: None,
                network: None,
                tethered: stdin == Stdin::Tether,
            })
        }
    }
}

/// The line the remote user's shell runs. Tethered, it starts the command in a session of its
/// own with stdin from `/dev/null`, watches the connection's stdin on a second descriptor, and
/// kills the command's whole group, and what is left in its session (`pkill -s`, where the host
/// has it), when that closes; when the command exits first, what it left there is killed, as
/// for a local exec. Nothing else is confined on the remote host (`confine`).
fn remote_line(argv: &[String], cwd: Option<&str>, stdin: Stdin) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    let command = quoted.join(" ");
    match stdin {
        Stdin::Terminal | Stdin::Passed => match cwd {
            Some(cwd) => format!("cd {} && {command}", shell_quote(cwd)),
            None => command,
        },
        Stdin::Tether => format!(
            "exec 3<&0\n\
             {cd}\
             if command -v setsid >/dev/null 2>&1; then setsid {command} </dev/null 3<&- &\n\
             else {command} </dev/null 3<&- &\nfi\n\
             c=$!\n\
             {{ while read -r _; do :; done; kill -KILL -$c || kill -KILL $c; pkill -KILL -s $c; }} \
             <&3 2>/dev/null &\n\
             w=$!\n\
             exec 3<&-\n\
             wait $c; s=$?\n\
             kill $w 2>/dev/null; kill -KILL -$c 2>/dev/null; pkill -KILL -s $c 2>/dev/null\n\
             exit $s\n",
            cd = match cwd {
                Some(cwd) => format!("cd {} || exit 1\n", shell_quote(cwd)),
                None => String::new(),
            },
        ),
    }
}

impl Prepared {
    /// Closes this process's copies of the descriptors handed on to the command, once it has
    /// started (so that bubblewrap's reports end when it does).
    pub fn close_handed(&mut self) {
        self.handed.clear();
    }

    /// Its network, when it must be connected once the command has started (`net=outbound`:
    /// [`outbound::Connection::connect`], which lets it go on; until then it waits).
    pub fn take_network(&mut self) -> Option<outbound::Connection> {
        self.network.take()
    }

    /// The command, run directly; stdio and process group are left to the caller, who keeps
    /// `self` until it has ended (its cgroup goes with it).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        self.setup(&mut command);
        if let Some(run_as) = self.run_as {
            // SAFETY: the dropper makes async-signal-safe system calls only; it comes last, so
            // the cgroup is joined and the directory entered with the daemon's rights.
            unsafe {
                command.pre_exec(run_as.dropper());
            }
        }
        command
    }

    /// The command run under `drydock exec-guard`, tied to the claim `watchdog` follows.
    fn guarded(&self, watchdog: &Watchdog) -> Command {
        let until = watchdog.deadline(*watchdog.held_until.borrow());
        let mut command = Command::new(&watchdog.program);
        command
            .arg("exec-guard")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--until")
            .arg(until.to_string())
            .arg("--keepalive")
            .arg(watchdog.keepalive.as_millis().to_string())
            .arg("--pause-limit")
            .arg(watchdog.pause_limit.as_millis().to_string())
            .args(self.tethered.then_some("--tether"))
            .args(self.run_as.iter().flat_map(|run_as| {
                [
                    "--uid",
                    &run_as.uid.to_string(),
                    "--gid",
                    &run_as.gid.to_string(),
                ]
                .map(OsString::from)
            }))
            .arg("--")
            .arg(&self.program)
            .args(&self.args);
        self.setup(&mut command);
        command
    }

    /// Starts `command` (the exec's, or its guard, which hands all of these on) with the exec's
    /// environment alone; unconfined in its directory; confined in its cgroup, inheriting the
    /// root for bubblewrap. The program is looked up in the exec's `PATH`.
    fn setup(&self, command: &mut Command) {
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let handed = self.handed.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: async-signal-safe system calls only, on descriptors `self` holds open until
        // the spawn. First, so that nothing but stdio and those is inherited.
        unsafe {
            command.pre_exec(descriptors::hand_on(handed));
        }
        if let Some(cgroup) = &self.cgroup {
            // SAFETY: the joiner only writes to descriptors `self` holds open until the spawn.
            unsafe {
                command.pre_exec(cgroup.joiner());
            }
        }
        if let Some(dir) = &self.dir {
            let raw = dir.as_raw_fd();
            // SAFETY: `fchdir` is async-signal-safe, and `raw` stays open until the command
            // has started (`self` outlives the spawn).
            unsafe {
                command.pre_exec(move || {
                    rustix::process::fchdir(BorrowedFd::borrow_raw(raw)).map_err(Into::into)
                });
            }
        }
    }
}

/// Runs `request` through `reach` (the lease and resource `ids`), a local one as `confinement`
/// says, and describes what happened; never fails.
pub async fn run(
    reach: &Authorized,
    request: &ExecRequest,
    ids: &Ids,
    confinement: &Confinement,
) -> ExecResult {
    execute(reach, request, ids, confinement, None, None)
        .await
        .unwrap_or_else(|interrupted| failed(request, interrupted.to_string()))
}

/// Which of a command's outputs a [`Chunk`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

/// Bytes a streamed command wrote, as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where it wrote them.
    pub pipe: Pipe,
    /// What it wrote.
    pub bytes: Vec<u8>,
}

/// Runs `request` like [`run`], but hands its output to `sink` as it comes instead of keeping
/// it, at the pace `sink` is read: the result's `stdout` is empty and its `stderr` holds only
/// what the host says (a timeout, a signal, a command that could not start). When `sink`'s
/// receiver is dropped, the command is stopped (its process group killed) and the run ends.
pub async fn stream(
    reach: &Authorized,
    request: &ExecRequest,
    ids: &Ids,
    confinement: &Confinement,
    sink: mpsc::Sender<Chunk>,
) -> ExecResult {
    execute(reach, request, ids, confinement, None, Some(&sink))
        .await
        .unwrap_or_else(|interrupted| failed(request, interrupted.to_string()))
}

/// Runs `request` through `reach` (the lease and resource `ids`), a local one as `confinement`
/// says, under `drydock exec-guard`, which stops it with the claim `watchdog` follows;
/// describes what happened, unless the exec ended when the claim could no longer be vouched
/// for ([`Interrupted`]).
pub async fn run_guarded(
    reach: &Authorized,
    request: &ExecRequest,
    ids: &Ids,
    confinement: &Confinement,
    watchdog: Watchdog,
) -> Result<ExecResult, Interrupted> {
    execute(reach, request, ids, confinement, Some(watchdog), None).await
}

/// Runs the command, under the guard when there is a `watchdog`; its output kept, or handed
/// to `sink` as it comes.
async fn execute(
    reach: &Authorized,
    request: &ExecRequest,
    ids: &Ids,
    confinement: &Confinement,
    watchdog: Option<Watchdog>,
    sink: Option<&mpsc::Sender<Chunk>>,
) -> Result<ExecResult, Interrupted> {
    if let Some(why) = missing_program(reach, &request.argv) {
        let mut result = failed(request, why);
        result.exit_code = Some(NOT_FOUND);
        return Ok(result);
    }
    let cwd = request.cwd.as_deref();
    let mut prepared = match prepare(reach, &request.argv, cwd, ids, Stdin::Tether, confinement) {
        Ok(prepared) => prepared,
        Err(reason) => return Ok(failed(request, reason)),
    };
    let mut command = match &watchdog {
        Some(w) => prepared.guarded(w),
        None => prepared.command(),
    };
    command
        .stdin(match watchdog.is_some() || prepared.tethered {
            true => Stdio::piped(),
            false => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let program = &request.argv[0];
            return Ok(failed(
                request,
                format!("could not run {program:?}: {error}"),
            ));
        }
    };
    // Its caps stay until it has ended; its descriptors are the child's alone now.
    let _cgroup = prepared.cgroup.take();
    let network = prepared.take_network();
    drop(prepared);
    let group = Group::new(&child, watchdog.is_some());
    let _link = match network.map(outbound::Connection::connect) {
        None => None,
        Some(connecting) => match connecting.await {
            Ok(link) => Some(link),
            Err(why) => {
                group.stop();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                group.reaped();
                // What bubblewrap said, if its sandbox ended early (a mount it could not make).
                let said = tokio::time::timeout(
                    Duration::from_secs(2),
                    read_capped(child.stderr.take(), 1000),
                );
                let why = match said.await.unwrap_or_default().trim() {
                    "" => why,
                    said => format!("{why} (bubblewrap: {said})"),
                };
                return Ok(failed(request, why));
            }
        },
    };
    // The guard's renewals, or (unguarded) the tether, held open until the command is done.
    let stdin = child.stdin.take();
    let watchdog = watchdog.map(Arc::new);
    let (feeder, _tether) = match &watchdog {
        Some(w) => (
            Some(AbortOnDrop(tokio::spawn(feed(stdin, w.clone())))),
            None,
        ),
        None => (None, stdin),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let output = async {
        match sink {
            None => tokio::join!(
                read_capped(stdout, OUTPUT_LIMIT),
                read_capped(stderr, OUTPUT_LIMIT)
            ),
            Some(sink) => {
                tokio::join!(
                    forward(stdout, Pipe::Stdout, sink),
                    forward(stderr, Pipe::Stderr, sink)
                );
                (String::new(), String::new())
            }
        }
    };
    let exited = async {
        let status = child.wait().await;
        group.sweep();
        status
    };
    let abandoned = async {
        match sink {
            Some(sink) => sink.closed().await,
            None => std::future::pending().await,
        }
    };
    let limit = Duration::from_millis(u64::from(request.timeout_ms));
    let finished = tokio::time::timeout(limit, async {
        tokio::select! {
            (status, (stdout, stderr)) = async { tokio::join!(exited, output) } => Some((status, stdout, stderr)),
            () = abandoned => None,
        }
    })
    .await;
    drop(feeder);
    if watchdog.is_some_and(|w| !w.vouches_now()) {
        // The guard may have paused and killed it: whatever it left is not its result.
        group.stop();
        return Err(Interrupted);
    }
    let (status, stdout, mut stderr) = match finished {
        Ok(Some(finished)) => finished,
        ended_early => {
            let why = match ended_early {
                Err(_) => format!("timed out after {}", humantime::format_duration(limit)),
                _ => "stopped: nobody reads its output any more".to_string(),
            };
            group.stop();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            group.reaped();
            return Ok(failed(request, why));
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => return Ok(failed(request, format!("waiting for the command: {error}"))),
    };
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        stderr.push_str(&format!("\n(killed by signal {signal})"));
    }
    Ok(ExecResult {
        id: request.id.clone(),
        exit_code: status.code(),
        stdout,
        stderr,
    })
}

/// The process group of a started command, killed whole when the run is abandoned.
struct Group {
    pid: Option<Pid>,
    guarded: bool,
    live: AtomicBool,
}

impl Group {
    fn new(child: &tokio::process::Child, guarded: bool) -> Self {
        let pid = child.id().and_then(|id| Pid::from_raw(id as i32));
        Group {
            pid,
            guarded,
            live: AtomicBool::new(pid.is_some()),
        }
    }

    /// Kills the group: through its guard (which kills its own group of the command), or
    /// directly.
    fn stop(&self) {
        let Some(pid) = self.pid.filter(|_| self.live.load(Ordering::SeqCst)) else {
            return;
        };
        let _ = match self.guarded {
            true => rustix::process::kill_process(pid, Signal::TERM),
            false => rustix::process::kill_process_group(pid, Signal::KILL),
        };
    }

    /// After the leader exited: kills what it left behind in its group (a guard does this
    /// itself), then forgets the group.
    fn sweep(&self) {
        if !self.guarded {
            self.stop();
        }
        self.reaped();
    }

    fn reaped(&self) {
        self.live.store(false, Ordering::SeqCst);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes each new deadline to the guard, one line each, and the latest again every keepalive
/// so that the guard knows the daemon is alive. Returns (closing the pipe, which makes the guard
/// kill the command) when the claim is gone.
async fn feed(stdin: Option<tokio::process::ChildStdin>, watchdog: Arc<Watchdog>) {
    let Some(mut stdin) = stdin else { return };
    let mut held_until = watchdog.held_until.clone();
    let mut keepalive = tokio::time::interval(watchdog.keepalive.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            changed = held_until.changed() => if changed.is_err() { return },
            _ = keepalive.tick() => {}
        }
        let line = format!("{}\n", watchdog.deadline(*held_until.borrow_and_update()));
        if stdin.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A task aborted when its handle is dropped (a dropped `JoinHandle` would detach it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes; the rest is counted and noted.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let (mut kept, mut dropped) = (Vec::new(), 0usize);
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let take = n.min(cap - kept.len());
        kept.extend_from_slice(&buf[..take]);
        dropped += n - take;
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n… ({dropped} more bytes dropped)"));
    }
    text
}

/// Hands a stream on to `sink` as it is read, until its end or until nobody receives.
async fn forward(pipe: Option<impl AsyncRead + Unpin>, from: Pipe, sink: &mpsc::Sender<Chunk>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = Chunk {
            pipe: from,
            bytes: buf[..n].to_vec(),
        };
        if sink.send(chunk).await.is_err() {
            return;
        }
    }
}

/// Quotes one word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

pub(crate) fn failed(request: &ExecRequest, reason: String) -> ExecResult {
    ExecResult {
        id: request.id.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const UNCONFINED: Confinement = Confinement::Unconfined;

    fn request(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            id: "x".into(),
            lease_key: "host".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            timeout_ms: 5_000,
        }
    }

    fn local(dir: &std::path::Path) -> Authorized {
        let root = dir.to_string_lossy().into_owned();
        Authorized {
            interface: CommandInterface::Local { root: root.clone() },
            anchor: Some(root),
            options: Default::default(),
        }
    }

    #[tokio::test]
    async fn local_commands_run_in_the_root() {
        let root = tempfile::tempdir().unwrap();
        let reach = local(root.path());
        let result = run(&reach, &request(&["pwd"]), &Ids::default(), &UNCONFINED).await;
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.stdout.trim(), root.path().to_string_lossy());

        let result = run(
            &reach,
            &request(&["sh", "-c", "echo oops >&2; exit 3"]),
            &Ids::default(),
            &UNCONFINED,
        )
        .await;
        assert_eq!((result.exit_code, result.stderr.trim()), (Some(3), "oops"));

        let missing = run(
            &reach,
            &request(&["/no/such/program"]),
            &Ids::default(),
            &UNCONFINED,
        )
        .await;
        assert_eq!(missing.exit_code, None);
        assert!(
            missing.stderr.contains("could not run"),
            "{}",
            missing.stderr
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let root = tempfile::tempdir().unwrap();
        let marker = root.path().join("grandchild-ran");
        let script = format!("(sleep 2; touch {}) & sleep 10", marker.display());
        let mut slow = request(&["sh", "-c", &script]);
        slow.timeout_ms = 200;
        let result = run(&local(root.path()), &slow, &Ids::default(), &UNCONFINED).await;
        assert_eq!(result.exit_code, None);
        assert!(
            result.stderr.contains("timed out after 200ms"),
            "{}",
            result.stderr
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn output_is_capped_while_it_is_read() {
        let root = tempfile::tempdir().unwrap();
        let bomb = request(&["sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' x"]);
        let result = run(&local(root.path()), &bomb, &Ids::default(), &UNCONFINED).await;
        assert_eq!(result.exit_code, Some(0));
        assert!(result.stdout.len() < OUTPUT_LIMIT + 100);
        assert!(
            result.stdout.ends_with(&format!(
                "({} more bytes dropped)",
                50_000_000 - OUTPUT_LIMIT
            )),
            "{}",
            &result.stdout[result.stdout.len() - 60..]
        );
    }

    #[tokio::test]
    async fn leftovers_of_a_finished_command_are_killed() {
        let root = tempfile::tempdir().unwrap();
        let marker = root.path().join("leftover-ran");
        let script = format!("(sleep 1; touch {}) &", marker.display());
        let result = run(
            &local(root.path()),
            &request(&["sh", "-c", &script]),
            &Ids::default(),
            &UNCONFINED,
        )
        .await;
        assert_eq!(result.exit_code, Some(0));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!marker.exists(), "a background process outlived its exec");
    }

    #[tokio::test]
    async fn an_exec_sees_its_documented_environment_and_nothing_of_the_daemons() {
        let root = tempfile::tempdir().unwrap();
        let ids = Ids {
            lease: Some("L3".into()),
            resource: Some("R2".into()),
        };
        let result = run(&local(root.path()), &request(&["env"]), &ids, &UNCONFINED).await;
        assert_eq!(result.exit_code, Some(0), "{}", result.stderr);
        let mut seen: Vec<&str> = result.stdout.lines().collect();
        seen.sort();
        let home = format!("HOME={}", root.path().display());
        let pwd = format!("PWD={}", root.path().display());
        let expected = [
            "DRYDOCK_LEASE=L3",
            "DRYDOCK_RESOURCE=R2",
            home.as_str(),
            "LANG=C.UTF-8",
            "LC_ALL=C.UTF-8",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            pwd.as_str(),
        ];
        assert_eq!(seen, expected, "this test process's own variables stay out");
    }

    #[tokio::test]
    async fn a_grant_sets_variables_and_the_user_execs_run_as_confined_or_not() {
        let nobody = RunAs::resolve("nobody").expect("the machine has a nobody user");
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(root.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
        let mut reach = local(root.path());
        reach.options = "user=nobody,env=TOOLS=/opt/tools,env=PATH=/opt/tools/bin:/usr/bin:/bin"
            .parse()
            .unwrap();
        let script = "id -u; id -G; echo $TOOLS $PATH; touch mine";
        let argv = ["sh", "-c", script];
        for (how, confinement) in [("unconfined", UNCONFINED), ("confined", sandbox(vec![]))] {
            let result = run(&reach, &request(&argv), &Ids::default(), &confinement).await;
            assert_eq!(result.exit_code, Some(0), "{how}: {}", result.stderr);
            let expected = format!(
                "{uid}\n{gid}\n/opt/tools /opt/tools/bin:/usr/bin:/bin\n",
                uid = nobody.uid,
                gid = nobody.gid
            );
            assert_eq!(result.stdout, expected, "{how}");
            let made = std::fs::metadata(root.path().join("mine")).unwrap();
            let owner = std::os::unix::fs::MetadataExt::uid(&made);
            assert_eq!(owner, nobody.uid, "{how}: what it made is the user's");
            std::fs::remove_file(root.path().join("mine")).unwrap();
        }
        reach.options = "user=no-such-user-here".parse().unwrap();
        let result = run(&reach, &request(&["true"]), &Ids::default(), &UNCONFINED).await;
        assert!(
            result.stderr.contains("does not have"),
            "a missing user is named: {}",
            result.stderr
        );
    }

    /// The sandbox, hiding `hidden`: bubblewrap must work here (`scripts/test.sh` installs it).
    fn sandbox(hidden: Vec<std::path::PathBuf>) -> Confinement {
        let sandbox = confine::Sandbox::probe(None, hidden).expect("bubblewrap confines here");
        assert_eq!(sandbox.caps_missing(), None, "cgroups cap execs here");
        Confinement::Sandboxed(sandbox)
    }

    /// Processes whose command line is `argv`, anywhere on the machine.
    fn processes(argv: &[&str]) -> Vec<String> {
        let wanted = argv.join("\0") + "\0";
        let entries = std::fs::read_dir("/proc").unwrap().flatten();
        entries
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes())
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_confined_exec_writes_only_its_root_and_sees_none_of_the_hidden_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/id"), "key").unwrap();
        std::fs::write(root.join("drydock.db"), "rows").unwrap();
        std::fs::write(tmp.path().join("beside"), "beside").unwrap();
        let hidden = vec![root.join("keys"), root.join("drydock.db")];
        let script = "echo made > made; cat ../beside; cat drydock.db; ls keys; \
                      touch /usr/x /etc/x ../x; echo $HOME; pwd";
        let mut asked = request(&["sh", "-c", script]);
        asked.cwd = Some(".".into());
        let result = run(&local(&root), &asked, &Ids::default(), &sandbox(hidden)).await;
        assert_eq!(
            std::fs::read_to_string(root.join("made")).unwrap(),
            "made\n"
        );
        let home = root.to_str().unwrap();
        assert_eq!(
            result.stdout,
            format!("{home}\n{home}\n"),
            "{}",
            result.stderr
        );
        for refused in [
            "../beside: No such file",
            "drydock.db: Permission denied",
            "ls: cannot open directory 'keys': Permission denied",
            "'/usr/x': Read-only file system",
            "'/etc/x': Read-only file system",
        ] {
            assert!(
                result.stderr.contains(refused),
                "{refused}: {}",
                result.stderr
            );
        }
        assert!(!tmp.path().join("x").exists(), "it wrote beside its root");
        assert_eq!(std::fs::read(root.join("drydock.db")).unwrap(), b"rows");
    }

    #[tokio::test]
    async fn nothing_a_confined_exec_starts_outlives_it() {
        let root = tempfile::tempdir().unwrap();
        let escapes = "setsid sleep 86391 & (setsid sh -c 'sleep 86392 &' &); sleep 0.3";
        for (script, timeout) in [
            (format!("{escapes}; sleep 60"), 1_000),
            (escapes.to_string(), 10_000),
        ] {
            let mut asked = request(&["sh", "-c", &script]);
            asked.timeout_ms = timeout;
            run(
                &local(root.path()),
                &asked,
                &Ids::default(),
                &sandbox(vec![]),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            for marker in ["86391", "86392"] {
                let left = processes(&["sleep", marker]);
                assert!(
                    left.is_empty(),
                    "sleep {marker} outlived its exec: {left:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_grant_caps_an_execs_processes_and_memory() {
        let root = tempfile::tempdir().unwrap();
        let mut reach = local(root.path());
        reach.options = "pids=16,memory=64M".parse().unwrap();
        let forks = "for i in $(seq 40); do sleep 2 & done; wait";
        let result = run(
            &reach,
            &request(&["sh", "-c", forks]),
            &Ids::default(),
            &sandbox(vec![]),
        )
        .await;
        assert!(result.stderr.contains("fork"), "{result:?}");
        let hog = "x=$(head -c 268435456 /dev/zero | tr '\\0' x); echo ${#x}";
        let result = run(
            &reach,
            &request(&["sh", "-c", hog]),
            &Ids::default(),
            &sandbox(vec![]),
        )
        .await;
        assert_ne!(result.exit_code, Some(0), "{result:?}");
        assert!(!result.stdout.contains("268435456"), "{result:?}");
    }

    /// Runs `script` with `sh -c` in a sandbox rooted at `reach`'s root.
    async fn confined(reach: &Authorized, script: &str) -> ExecResult {
        let asked = request(&["sh", "-c", script]);
        run(reach, &asked, &Ids::default(), &sandbox(vec![])).await
    }

    #[tokio::test]
    async fn a_confined_exec_sees_only_the_allowed_files_of_etc() {
        let root = tempfile::tempdir().unwrap();
        let result = confined(
            &local(root.path()),
            "ls /etc; echo --; ls /etc/ssl; head -c 5 /etc/passwd",
        )
        .await;
        let (etc, rest) = result.stdout.split_once("--\n").expect("both listed");
        let allowed = |dir: &str, name: &str| {
            confine::ETC_ALLOWED.iter().any(|a| {
                let path = std::path::Path::new(a);
                let parent = path.parent().and_then(|p| p.to_str()).unwrap_or("");
                let first = path.iter().next().and_then(|c| c.to_str());
                (parent == dir && path.file_name().and_then(|n| n.to_str()) == Some(name))
                    || (dir.is_empty() && first == Some(name))
            })
        };
        for name in etc.lines() {
            assert!(
                allowed("", name),
                "/etc/{name} is not on the allow-list: {etc}"
            );
        }
        let (ssl, passwd) = rest.rsplit_once('\n').unwrap_or(("", rest));
        for name in ssl.lines() {
            assert!(
                allowed("ssl", name),
                "/etc/ssl/{name} is not on the allow-list"
            );
        }
        assert!(etc.lines().any(|l| l == "passwd"), "{etc}");
        assert_eq!(passwd, "root:", "{result:?}");
        assert!(!ssl.lines().any(|l| l == "private"), "{ssl}");
    }

    #[tokio::test]
    async fn a_confined_exec_reaches_the_hosts_loopback_only_with_net_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = tempfile::tempdir().unwrap();
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
        for (options, reaches) in [("", false), ("net=none", false), ("net=host", true)] {
            let mut reach = local(root.path());
            reach.options = options.parse().unwrap();
            let asked = request(&["bash", "-c", &script]);
            let result = run(&reach, &asked, &Ids::default(), &sandbox(vec![])).await;
            assert_eq!(
                result.stdout.contains("connected"),
                reaches,
                "{options:?}: {result:?}"
            );
        }
        // A loopback of its own is up: nothing listens there (refused, not unreachable).
        let own = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>&1 | grep -q refused && echo refused";
        let result = confined(&local(root.path()), own).await;
        assert_eq!(result.stdout, "refused\n", "{result:?}");
    }

    /// A network outside this machine, for the length of a test: a network namespace joined
    /// to this one by a veth pair (this side `198.51.100.1`, that side `198.51.100.2`), which
    /// also answers for the cloud metadata address `169.254.169.254`, routed there.
    struct Outside {
        name: String,
    }

    impl Outside {
        fn new() -> Outside {
            let name = format!("dd-out-{}", std::process::id());
            let (here, there) = (
                format!("dd-h{}", std::process::id() % 100_000),
                format!("dd-o{}", std::process::id() % 100_000),
            );
            let outside = Outside { name: name.clone() };
            let ip = |line: &str| {
                let args: Vec<&str> = line.split_whitespace().collect();
                let out = std::process::Command::new("ip")
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "ip {line}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            ip(&format!("netns add {name}"));
            ip(&format!("link add {here} type veth peer name {there}"));
            ip(&format!("link set {there} netns {name}"));
            ip(&format!("addr add 198.51.100.1/30 dev {here}"));
            ip(&format!("link set {here} up"));
            ip(&format!("-n {name} addr add 198.51.100.2/30 dev {there}"));
            ip(&format!("-n {name} addr add 169.254.169.254/32 dev lo"));
            ip(&format!("-n {name} link set {there} up"));
            ip(&format!("-n {name} link set lo up"));
            ip("route add 169.254.169.254/32 via 198.51.100.2");
            outside
        }

        /// A listener in the outside network, on every address of it.
        fn listen(&self) -> std::net::TcpListener {
            let path = format!("/run/netns/{}", self.name);
            std::thread::spawn(move || {
                let ns = std::fs::File::open(path).unwrap();
                // SAFETY: moves this thread alone into the namespace.
                let entered = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET)
                };
                assert_eq!(entered, 0, "{}", std::io::Error::last_os_error());
                std::net::TcpListener::bind("0.0.0.0:0").unwrap()
            })
            .join()
            .unwrap()
        }
    }

    impl Drop for Outside {
        fn drop(&mut self) {
            // The veth pair and the route through it go with the namespace.
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    #[tokio::test]
    async fn net_outbound_reaches_the_outside_but_nothing_of_the_machine() {
        let outside = Outside::new();
        let there = outside.listen();
        let far = there.local_addr().unwrap().port();
        let here = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let near = here.local_addr().unwrap().port();
        let root = tempfile::tempdir().unwrap();
        let targets = [
            ("198.51.100.2", far),
            ("169.254.169.254", far),
            ("127.0.0.1", near),
            ("198.51.100.1", near),
        ];
        let script: String = targets
            .iter()
            .map(|(address, port)| {
                format!("(exec 3<>/dev/tcp/{address}/{port}) && echo {address}; ")
            })
            .chain(["true".to_string()])
            .collect();
        let reached = |confinement: Confinement, options: &'static str| {
            let script = script.clone();
            let root = root.path().to_path_buf();
            async move {
                let mut reach = local(&root);
                reach.options = options.parse().unwrap();
                let asked = request(&["bash", "-c", &script]);
                let result = run(&reach, &asked, &Ids::default(), &confinement).await;
                assert_eq!(result.exit_code, Some(0), "{options}: {result:?}");
                result.stdout.lines().map(String::from).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            reached(sandbox(vec![]), "net=outbound").await,
            ["198.51.100.2"]
        );
        // As another user, in a user namespace of its own, the same.
        assert_eq!(
            reached(sandbox(vec![]), "net=outbound,user=nobody").await,
            ["198.51.100.2"]
        );
        // The store's address, when it is out there.
        let store = Ipv4Addr::new(198, 51, 100, 2);
        let denying = sandbox(vec![]).denying([store]);
        assert!(reached(denying, "net=outbound").await.is_empty());
        assert!(reached(sandbox(vec![]), "net=none").await.is_empty());
        let all: Vec<&str> = targets.iter().map(|(address, _)| *address).collect();
        assert_eq!(reached(sandbox(vec![]), "net=host").await, all);
    }

    #[tokio::test]
    async fn a_confined_exec_inherits_no_descriptor_beyond_stdio() {
        let stray = std::fs::File::open("/").unwrap();
        // Inheritable, as a launcher's descriptor would be.
        rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let result = confined(&local(root.path()), "ls /proc/$$/fd; true").await;
        assert_eq!(result.stdout, "0\n1\n2\n", "{result:?}");
    }

    #[tokio::test]
    async fn a_read_only_path_swapped_for_a_link_never_shows_what_the_link_leads_to() {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        let tmp = tempfile::tempdir().unwrap();
        let (shown, outside, swap) = (
            tmp.path().join("shown"),
            tmp.path().join("outside"),
            tmp.path().join("swap"),
        );
        std::fs::create_dir(&shown).unwrap();
        std::fs::write(shown.join("inside"), "").unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("marker"), "").unwrap();
        std::os::unix::fs::symlink(&outside, &swap).unwrap();
        let exchange = {
            let (shown, swap) = (shown.clone(), swap.clone());
            move || renameat_with(CWD, &shown, CWD, &swap, RenameFlags::EXCHANGE).unwrap()
        };
        let mut reach = local(&tmp.path().join("root"));
        reach.options = format!("ro={}", shown.display()).parse().unwrap();
        let script = format!("ls {}", shown.display());

        // Left in place: refused, naming it.
        exchange();
        let result = confined(&reach, &script).await;
        assert!(!result.stdout.contains("marker"), "{result:?}");
        assert!(
            result.stderr.contains("symbolic link") && result.stderr.contains("shown"),
            "{result:?}"
        );
        exchange();

        // Raced: swapped back and forth while execs start.
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    exchange();
                }
            }
        });
        let mut inside = 0;
        for _ in 0..200 {
            let result = confined(&reach, &script).await;
            assert!(!result.stdout.contains("marker"), "{result:?}");
            inside += usize::from(result.stdout.contains("inside"));
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(inside > 0, "no exec saw the path itself");
    }

    #[tokio::test]
    async fn refused_local_execs_say_why() {
        let root = tempfile::tempdir().unwrap();
        let refused = Confinement::Refused("no namespaces here".into());
        let result = run(
            &local(root.path()),
            &request(&["true"]),
            &Ids::default(),
            &refused,
        )
        .await;
        assert_eq!(result.exit_code, None);
        assert!(
            result
                .stderr
                .starts_with("local execs are refused: no namespaces here;"),
            "{}",
            result.stderr
        );
        assert!(
            result.stderr.contains("--unconfined-exec"),
            "{}",
            result.stderr
        );
    }

    #[test]
    fn ssh_commands_run_in_batch_mode_with_the_key_and_a_quoted_remote_line() {
        let reach = Authorized {
            interface: CommandInterface::Ssh {
                host: "build.example".into(),
                port: 2222,
                user: "ci".into(),
                key_path: "/etc/drydock/id".into(),
                root: Some("/srv/build".into()),
            },
            anchor: None,
            options: Default::default(),
        };
        let argv = ["git", "clone", "it's here"].map(String::from);
        let command = prepare(
            &reach,
            &argv,
            Some("work dir"),
            &Ids::default(),
            Stdin::Passed,
            &Confinement::Refused("not asked".into()),
        )
        .unwrap()
        .command();
        let command = command.as_std();
        assert_eq!(command.get_program(), "ssh");
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-o",
                "BatchMode=yes",
                "-i",
                "/etc/drydock/id",
                "-p",
                "2222",
                "ci@build.example",
                "--",
                r"cd '/srv/build/work dir' && 'git' 'clone' 'it'\''s here'",
            ]
        );
        let env: Vec<_> = command
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap(), v))
            .collect();
        let locale = Some(std::ffi::OsStr::new(EXEC_LOCALE));
        assert_eq!(
            env,
            [
                ("LANG", locale),
                ("LC_ALL", locale),
                ("PATH", Some(std::ffi::OsStr::new(EXEC_PATH))),
            ],
            "the local ssh gets no HOME, and nothing else of the daemon's"
        );
    }

    /// Runs a tethered remote line with `sh` as an SSH server would, its stdin a pipe closed
    /// after `cut_after` (or held until it exits): returns its exit code and output.
    fn run_remote_line(script: &str, cut_after: Option<Duration>) -> (Option<i32>, String) {
        let argv = ["sh", "-c", script].map(String::from);
        let line = remote_line(&argv, Some("/"), Stdin::Tether);
        let mut shell = std::process::Command::new("sh")
            .args(["-c", &line])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut tether = shell.stdin.take();
        if let Some(after) = cut_after {
            std::thread::sleep(after);
            tether = None;
        }
        let output = shell.wait_with_output().unwrap();
        drop(tether);
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet) within a few seconds: a SIGKILL
    /// sent to a process group is delivered to each member asynchronously.
    fn is_dead(pid: &str) -> bool {
        let gone = || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            stat.map_or(true, |stat| stat.split(' ').nth(2) == Some("Z"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gone() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[test]
    fn a_tethered_remote_command_dies_whole_when_its_connection_closes() {
        // The second sleep is in a process group of its own, in the same session.
        let (code, pids) = run_remote_line(
            "sleep 300 & echo $! $$; perl -e 'setpgrp(0, 0); exec @ARGV' sleep 301 >/dev/null & \
             echo $!; \
             sleep 300",
            Some(Duration::from_millis(500)),
        );
        assert_eq!(code, Some(137), "killed when the tether closed");
        for pid in pids.split_whitespace() {
            assert!(is_dead(pid), "{pid} outlived the connection");
        }
    }

    #[test]
    fn a_tethered_remote_command_keeps_its_exit_code_and_leaves_nothing_behind() {
        let (code, pids) = run_remote_line("sleep 300 & echo $!; pwd; exit 3", None);
        assert_eq!(code, Some(3));
        let (leftover, cwd) = pids.split_once('\n').unwrap();
        assert_eq!(cwd.trim(), "/", "it ran in its cwd");
        assert!(is_dead(leftover), "a background process outlived its exec");
    }

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
