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
//! With `--keepalive MS` the daemon also repeats its latest `T` at least that often while it
//! runs. When `T` passes while the daemon is still heard (it is alive, only waiting for its
//! store to confirm the claim: a stalled database, another process holding SQLite's write
//! lock), the group is **paused** (SIGSTOP) rather than killed: a stopped command cannot run
//! beside another worker's copy, and it resumes (SIGCONT) when a renewal confirms the claim. It
//! is killed when the daemon falls silent (stopped, hung), when the pause lasts `--pause-limit`
//! or when stdin closes (the claim was lost). Only a local command is paused: stopping the local
//! `ssh` of a remote one would not stop the remote command, so the daemon passes no keepalive
//! for those and they are killed at `T` as before.
//!
//! The boot clock (`CLOCK_BOOTTIME`) is shared by every process on the host and never steps, so
//! neither a stopped daemon nor a wall-clock step can stretch the exec past its claim. When the
//! command exits on its own, the guard kills what it left in its group and exits the way the
//! command did.
//!
//! A pause, a resume and a kill reach the command's process group and every process descending
//! from the command. A confined command (`super::confine`) is bubblewrap, whose PID namespace
//! holds everything the exec started: when the guard kills it, or dies itself, the namespace's
//! init dies and the kernel kills the rest, however it detached.

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
    /// Milliseconds within which the daemon repeats its deadline while it runs; with it, a
    /// deadline that passes while the daemon is heard pauses the command instead of killing
    /// it (silence for two of these kills it).
    #[arg(long)]
    pub keepalive: Option<i64>,
    /// Milliseconds a paused command waits for its claim to be confirmed before it is killed.
    #[arg(long, default_value_t = 0)]
    pub pause_limit: i64,
    /// The user id the command runs as (its grant's `user=`); the guard keeps its own, so it
    /// can still stop the command.
    #[arg(long, requires = "gid")]
    pub uid: Option<u32>,
    /// The group id the command runs as, with `--uid`.
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
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
    let mut command = tokio::process::Command::new(program);
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        // SAFETY: the dropper makes async-signal-safe system calls only.
        unsafe {
            command.pre_exec(super::RunAs { uid, gid }.dropper());
        }
    }
    let mut child = match command
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
    let signal_group = |signal| {
        if let Some(group) = group {
            signal_all(group, signal);
        }
    };
    let kill_group = || signal_group(Signal::KILL);
    let mut renewals = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut watch = Watch {
        until: args.until,
        heard: boottime_ms(),
        paused_since: None,
        keepalive: args.keepalive.filter(|_| !args.tether),
        pause_limit: args.pause_limit,
    };
    loop {
        let now = boottime_ms();
        match (watch.verdict(now), watch.paused_since) {
            (Verdict::Kill, _) => break,
            (Verdict::Run, Some(_)) => {
                watch.paused_since = None;
                signal_group(Signal::CONT);
            }
            (Verdict::Pause, None) => {
                watch.paused_since = Some(now);
                signal_group(Signal::STOP);
            }
            (Verdict::Run, None) | (Verdict::Pause, Some(_)) => {}
        }
        let left = Duration::from_millis(watch.next_look(now).saturating_sub(now).max(1) as u64);
        tokio::select! {
            status = child.wait() => {
                kill_group();
                return match status {
                    Ok(status) => exit_like(status),
                    Err(_) => KILLED,
                };
            }
            line = renewals.next_line() => match line {
                Ok(Some(line)) => watch.renewed(line.trim().parse().ok(), boottime_ms()),
                _ => break,
            },
            _ = tokio::time::sleep(left) => {}
            _ = terminated.recv() => break,
        }
    }
    kill_group();
    let _ = child.wait().await;
    KILLED
}

/// Sends `signal` to the command's process group and to every process descending from the
/// command, in rounds until no new one appears (a process may fork while the others stop). A
/// confined command's descendants are its whole PID namespace: what left the group (`setsid`,
/// a double fork) is still a child of bubblewrap's init, so a pause stops it too.
fn signal_all(command: Pid, signal: Signal) {
    let mut signalled = std::collections::HashSet::new();
    for round in 0..16 {
        // Found before the group is signalled: a killed parent's children are no longer its.
        let fresh: Vec<Pid> = descendants(command)
            .into_iter()
            .filter(|pid| signalled.insert(*pid))
            .collect();
        if round == 0 {
            let _ = rustix::process::kill_process_group(command, signal);
        } else if fresh.is_empty() {
            return;
        }
        for pid in fresh {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Every process descending from `root`, read from `/proc`.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID …`, where COMM may hold anything, `)` included.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![root.as_raw_nonzero().get()];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.extend(Pid::from_raw(child));
            next.push(child);
        }
    }
    found
}

/// What the guard knows of its claim, in boot-clock milliseconds.
#[derive(Debug, Clone, PartialEq)]
struct Watch {
    /// The deadline: the claim is surely held until then.
    until: i64,
    /// When the daemon last wrote.
    heard: i64,
    /// Since when the command has been paused, if it is.
    paused_since: Option<i64>,
    /// How often a live daemon writes; `None`: never pause, kill at the deadline.
    keepalive: Option<i64>,
    /// How long a pause may last.
    pause_limit: i64,
}

/// What to do with the command now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Let it run (resume it if paused).
    Run,
    /// Stop it until the claim is confirmed.
    Pause,
    /// Kill its group.
    Kill,
}

impl Watch {
    /// Runs while the claim is surely held; past the deadline, pauses while the daemon is heard
    /// and the pause is young, else kills.
    fn verdict(&self, now: i64) -> Verdict {
        if now < self.until {
            return Verdict::Run;
        }
        let Some(keepalive) = self.keepalive else {
            return Verdict::Kill;
        };
        let daemon_heard = now - self.heard < 2 * keepalive;
        let pause_young = self
            .paused_since
            .is_none_or(|since| now - since < self.pause_limit);
        match daemon_heard && pause_young {
            true => Verdict::Pause,
            false => Verdict::Kill,
        }
    }

    /// When to look again if nothing is heard: the deadline while it is ahead, else after a
    /// keepalive (silence or the pause limit may have come by then).
    fn next_look(&self, now: i64) -> i64 {
        match (now < self.until, self.keepalive) {
            (true, _) | (false, None) => self.until,
            (false, Some(keepalive)) => now + keepalive,
        }
    }

    /// The daemon wrote: a deadline (maybe the same again, as a keepalive), or a line that is
    /// not one (heard all the same).
    fn renewed(&mut self, until: Option<i64>, now: i64) {
        self.heard = now;
        if let Some(until) = until {
            self.until = until;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(keepalive: Option<i64>) -> Watch {
        Watch {
            until: 1_000,
            heard: 0,
            paused_since: None,
            keepalive,
            pause_limit: 5_000,
        }
    }

    #[test]
    fn without_keepalives_the_deadline_kills() {
        let w = watch(None);
        assert_eq!(w.verdict(999), Verdict::Run);
        assert_eq!(w.verdict(1_000), Verdict::Kill);
        assert_eq!(w.next_look(10), 1_000);
    }

    #[test]
    fn a_deadline_passed_while_the_daemon_is_heard_pauses_until_renewed() {
        let mut w = watch(Some(100));
        w.renewed(None, 950);
        assert_eq!(w.verdict(1_100), Verdict::Pause);
        w.paused_since = Some(1_100);
        w.renewed(Some(1_000), 1_200);
        assert_eq!(
            w.verdict(1_250),
            Verdict::Pause,
            "a keepalive is no renewal"
        );
        w.renewed(Some(9_000), 1_300);
        assert_eq!(w.verdict(1_300), Verdict::Run);
    }

    #[test]
    fn a_silent_daemon_or_a_long_pause_kills() {
        let mut w = watch(Some(100));
        w.renewed(None, 950);
        assert_eq!(w.verdict(1_150), Verdict::Kill, "silent for two keepalives");
        w.paused_since = Some(1_000);
        w.renewed(None, 5_990);
        assert_eq!(w.verdict(6_000), Verdict::Kill, "paused for the limit");
        assert_eq!(w.next_look(6_000), 6_100);
    }
}
