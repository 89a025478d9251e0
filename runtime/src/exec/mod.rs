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
//! Output is read while the command runs and capped as it is read ([`OUTPUT_LIMIT`] per
//! stream): a command that prints gigabytes costs the daemon 64 KiB. A local command starts in
//! a directory opened beneath its root without following links out of it (`dir`).

mod dir;
pub mod guard;

use crate::domain::{CommandInterface, ExecRequest, ExecResult};
use crate::grant::Authorized;
use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;

/// Milliseconds on `CLOCK_BOOTTIME`: monotonic, shared by the host's processes, counting
/// suspended time, never stepped. Exec deadlines and the daemon's claims are both on it.
pub fn boottime_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec * 1000 + t.tv_nsec / 1_000_000
}

/// Bytes kept of each of stdout and stderr.
pub const OUTPUT_LIMIT: usize = 64 << 10;

/// How an exec is tied to the claim it runs under: the guard program, the time (boot clock,
/// milliseconds) until which the claim is surely held, renewed as the claim is, and the margin
/// the exec keeps from it.
pub struct Watchdog {
    /// The `drydock` binary, run as `drydock exec-guard`.
    pub program: PathBuf,
    /// Until when the claim is surely held.
    pub held_until: watch::Receiver<i64>,
    /// How long before that the guard kills the exec.
    pub margin: Duration,
}

impl Watchdog {
    fn deadline(&self, held_until: i64) -> i64 {
        held_until - self.margin.as_millis() as i64
    }
}

/// A command ready to start: program, arguments, and for a local interface the directory it
/// starts in (opened, so nothing can be swapped before it starts).
pub struct Prepared {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<OwnedFd>,
    /// Its stdin must be a pipe held open until it exits ([`Stdin::Tether`] over SSH).
    tethered: bool,
}

/// What a command's stdin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// The caller's (`drydock exec` at a terminal): passed through to the command.
    Passed,
    /// Nothing (a blueprint's exec). Over SSH it carries the exec's life instead: the local
    /// `ssh` gets a pipe that stays open until it exits, and the remote side kills the
    /// command's process group when that pipe closes, so a timeout, a lost claim or a dead
    /// daemon (which all kill the local `ssh`) kill the remote command too.
    Tether,
}

/// The environment variable naming an `ssh_config(5)` file for every SSH exec (`ssh -F`): known
/// hosts, jump hosts, timeouts. Without it, ssh reads the daemon user's own configuration.
pub const SSH_CONFIG_VAR: &str = "DRYDOCK_SSH_CONFIG";

/// Prepares `argv` (in `cwd`, relative to the interface's root) through `reach`: directly for
/// `local`, through `ssh` for `ssh`.
pub fn prepare(
    reach: &Authorized,
    argv: &[String],
    cwd: Option<&str>,
    stdin: Stdin,
) -> Result<Prepared, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    match &reach.interface {
        CommandInterface::Local { root } => {
            let anchor = reach
                .anchor
                .as_deref()
                .ok_or("the local interface has no anchor")?;
            Ok(Prepared {
                program: program.into(),
                args: args.iter().map(OsString::from).collect(),
                dir: Some(dir::open(anchor, root, cwd)?),
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
                dir: None,
                tethered: stdin == Stdin::Tether,
            })
        }
    }
}

/// The line the remote user's shell runs. Tethered, it starts the command in a session of its
/// own with stdin from `/dev/null`, watches the connection's stdin on a second descriptor, and
/// kills the command's whole group when that closes; when the command exits first, what it left
/// in its group is killed, as for a local exec.
fn remote_line(argv: &[String], cwd: Option<&str>, stdin: Stdin) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    let command = quoted.join(" ");
    match stdin {
        Stdin::Passed => match cwd {
            Some(cwd) => format!("cd {} && {command}", shell_quote(cwd)),
            None => command,
        },
        Stdin::Tether => format!(
            "exec 3<&0\n\
             {cd}\
             if command -v setsid >/dev/null 2>&1; then setsid {command} </dev/null 3<&- &\n\
             else {command} </dev/null 3<&- &\nfi\n\
             c=$!\n\
             {{ while read -r _; do :; done; kill -KILL -$c || kill -KILL $c; }} <&3 2>/dev/null &\n\
             w=$!\n\
             exec 3<&-\n\
             wait $c; s=$?\n\
             kill $w 2>/dev/null; kill -KILL -$c 2>/dev/null\n\
             exit $s\n",
            cd = match cwd {
                Some(cwd) => format!("cd {} || exit 1\n", shell_quote(cwd)),
                None => String::new(),
            },
        ),
    }
}

impl Prepared {
    /// The command, run directly; stdio and process group are left to the caller.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        self.start_in_dir(&mut command);
        command
    }

    /// The command run under `drydock exec-guard`, which kills it at `until` (boot clock).
    fn guarded(&self, guard: &std::path::Path, until: i64) -> Command {
        let mut command = Command::new(guard);
        command
            .arg("exec-guard")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--until")
            .arg(until.to_string())
            .args(self.tethered.then_some("--tether"))
            .arg("--")
            .arg(&self.program)
            .args(&self.args);
        self.start_in_dir(&mut command);
        command
    }

    fn start_in_dir(&self, command: &mut Command) {
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

/// Runs `request` through `reach` and describes what happened; never fails. With a
/// `watchdog`, the command runs under the guard and dies with the claim.
pub async fn run(
    reach: &Authorized,
    request: &ExecRequest,
    watchdog: Option<Watchdog>,
) -> ExecResult {
    let prepared = match prepare(reach, &request.argv, request.cwd.as_deref(), Stdin::Tether) {
        Ok(prepared) => prepared,
        Err(reason) => return failed(request, reason),
    };
    let mut command = match &watchdog {
        Some(w) => prepared.guarded(&w.program, w.deadline(*w.held_until.borrow())),
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
            return failed(request, format!("could not run {program:?}: {error}"));
        }
    };
    drop(prepared);
    let group = Group::new(&child, watchdog.is_some());
    // The guard's renewals, or (unguarded) the tether, held open until the command is done.
    let stdin = child.stdin.take();
    let (feeder, _tether) = match watchdog {
        Some(w) => (Some(AbortOnDrop(tokio::spawn(feed(stdin, w)))), None),
        None => (None, stdin),
    };
    let stdout = read_capped(child.stdout.take(), OUTPUT_LIMIT);
    let stderr = read_capped(child.stderr.take(), OUTPUT_LIMIT);
    let exited = async {
        let status = child.wait().await;
        group.sweep();
        status
    };
    let limit = Duration::from_millis(u64::from(request.timeout_ms));
    let finished =
        tokio::time::timeout(limit, async { tokio::join!(exited, stdout, stderr) }).await;
    drop(feeder);
    match finished {
        Err(_) => {
            group.stop();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            group.reaped();
            failed(
                request,
                format!("timed out after {}", humantime::format_duration(limit)),
            )
        }
        Ok((Err(error), _, _)) => failed(request, format!("waiting for the command: {error}")),
        Ok((Ok(status), stdout, mut stderr)) => {
            if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
                stderr.push_str(&format!("\n(killed by signal {signal})"));
            }
            ExecResult {
                id: request.id.clone(),
                exit_code: status.code(),
                stdout,
                stderr,
            }
        }
    }
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

/// Writes each new deadline to the guard, one line each. Returns (closing the pipe, which makes
/// the guard kill the command) when the claim is gone.
async fn feed(stdin: Option<tokio::process::ChildStdin>, mut watchdog: Watchdog) {
    let Some(mut stdin) = stdin else { return };
    while watchdog.held_until.changed().await.is_ok() {
        let held_until = *watchdog.held_until.borrow_and_update();
        let line = format!("{}\n", watchdog.deadline(held_until));
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

/// Quotes one word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn failed(request: &ExecRequest, reason: String) -> ExecResult {
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
        }
    }

    #[tokio::test]
    async fn local_commands_run_in_the_root() {
        let root = tempfile::tempdir().unwrap();
        let reach = local(root.path());
        let result = run(&reach, &request(&["pwd"]), None).await;
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.stdout.trim(), root.path().to_string_lossy());

        let result = run(
            &reach,
            &request(&["sh", "-c", "echo oops >&2; exit 3"]),
            None,
        )
        .await;
        assert_eq!((result.exit_code, result.stderr.trim()), (Some(3), "oops"));

        let missing = run(&reach, &request(&["/no/such/program"]), None).await;
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
        let result = run(&local(root.path()), &slow, None).await;
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
        let result = run(&local(root.path()), &bomb, None).await;
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
        let result = run(&local(root.path()), &request(&["sh", "-c", &script]), None).await;
        assert_eq!(result.exit_code, Some(0));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!marker.exists(), "a background process outlived its exec");
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
        };
        let argv = ["git", "clone", "it's here"].map(String::from);
        let command = prepare(&reach, &argv, Some("work dir"), Stdin::Passed)
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
        let (code, pids) = run_remote_line(
            "sleep 300 & echo $! $$; sleep 300",
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
