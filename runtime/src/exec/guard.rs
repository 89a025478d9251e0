//! `drydock exec-guard`: the process that keeps an exec from outliving its claim.
//!
//! The daemon starts each exec as `drydock exec-guard --parent PID --until T -- ARGV…`. The guard
//! starts the command in a process group of its own and kills that group, grandchildren
//! included, as soon as any of these happens:
//!
//! - the boot-clock time `T` passes without a renewal on stdin (the daemon writes a new `T`,
//!   one per line, each time its claim is extended; `T` is a margin before the claim can
//!   expire, so the group is dead before another worker may claim the object);
//! - stdin closes (the daemon dropped the run: fenced, cancelled, shutting down);
//! - the daemon dies (the kernel sends SIGTERM through `PR_SET_PDEATHSIG`), even by kill -9;
//! - the daemon sends SIGTERM (a timeout).
//!
//! The boot clock (`CLOCK_BOOTTIME`) is shared by every process on the host and never steps, so
//! neither a stopped daemon nor a wall-clock step can stretch the exec past its claim. When the
//! command exits on its own, the guard kills what it left in its group and exits the way the
//! command did.

use super::boottime_ms;
use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{SignalKind, signal};

/// The exit code when the guard killed the command.
const KILLED: i32 = 128 + 9;

/// What `drydock exec-guard` is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// The daemon's process id; the guard refuses to start the command if it is gone already.
    #[arg(long)]
    pub parent: i32,
    /// Boot-clock milliseconds after which the command is killed unless renewed on stdin.
    #[arg(long)]
    pub until: i64,
    /// Give the command a stdin pipe that stays open until it exits (an SSH exec's tether,
    /// see [`super::Stdin::Tether`]) rather than `/dev/null`.
    #[arg(long)]
    pub tether: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

/// Runs the command under guard; returns the exit code to exit with.
pub async fn run(args: GuardArgs) -> i32 {
    let Ok(mut terminated) = signal(SignalKind::terminate()) else {
        return KILLED;
    };
    let orphaned = rustix::process::set_parent_process_death_signal(Some(Signal::TERM)).is_err()
        || rustix::process::getppid().map(Pid::as_raw_nonzero)
            != Pid::from_raw(args.parent).map(Pid::as_raw_nonzero);
    if orphaned {
        return KILLED;
    }
    let (program, rest) = args.argv.split_first().expect("clap requires the command");
    let mut child = match tokio::process::Command::new(program)
        .args(rest)
        .stdin(match args.tether {
            true => Stdio::piped(),
            false => Stdio::null(),
        })
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("could not run {program:?}: {error}");
            return 127;
        }
    };
    let _tether = child.stdin.take();
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    let kill_group = || {
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
    };
    let mut renewals = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut until = args.until;
    loop {
        let left = Duration::from_millis(until.saturating_sub(boottime_ms()).max(0) as u64);
        tokio::select! {
            status = child.wait() => {
                kill_group();
                return match status {
                    Ok(status) => exit_like(status),
                    Err(_) => KILLED,
                };
            }
            line = renewals.next_line() => match line {
                Ok(Some(line)) => until = line.trim().parse().unwrap_or(until),
                _ => break,
            },
            _ = tokio::time::sleep(left) => if boottime_ms() >= until { break },
            _ = terminated.recv() => break,
        }
    }
    kill_group();
    let _ = child.wait().await;
    KILLED
}

/// The exit code that mirrors `status`: the command's own, or the signal that killed it,
/// re-raised on the guard so the daemon sees the same death.
fn exit_like(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    let signal = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9);
    // SAFETY: resetting a signal to its default action and raising it are plain libc calls
    // with no memory effects; the process is about to end either way.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    128 + signal
}
