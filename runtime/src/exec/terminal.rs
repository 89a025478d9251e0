//! `drydock exec` at a terminal: the command gets a pseudo-terminal of its own, and the caller's
//! terminal is relayed to it, as `docker exec -t`, `kubectl exec -t` and `ssh -t` do.
//!
//! A command given the caller's terminal could type into it: `ioctl(TIOCSTI)` pushes bytes into
//! a terminal's input as if they were typed, and the caller's shell reads them once the exec
//! ends (a `.bashrc` planted in a working copy is enough to run anything as the operator). Here
//! the command's controlling terminal is a new pseudo-terminal, in a session of its own;
//! `drydock exec` copies what the caller types to it and what it prints back. Meanwhile the
//! caller's terminal is in raw mode, so that line editing, Ctrl-C and Ctrl-Z happen in the
//! command's terminal, and the command's follows its window size. What a command pushes with
//! `TIOCSTI` lands in its own input, and goes when it does.

use rustix::pty::OpenptFlags;
use rustix::termios::{OptionalActions, Termios};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long what the command printed last is still copied after it exited.
const DRAIN: Duration = Duration::from_secs(2);

/// A pseudo-terminal for one command, relayed to the caller's terminal (stdin and stdout).
pub struct Terminal {
    /// The side `drydock exec` reads and writes.
    master: OwnedFd,
    /// The command's side, until it has started.
    command_side: Option<OwnedFd>,
    /// The caller's terminal modes, restored when this is dropped.
    caller: Termios,
}

impl Terminal {
    /// Whether `drydock exec` runs at a terminal (stdin and stdout both one), so that a command
    /// run through a local interface gets a terminal of its own.
    pub fn at_one() -> bool {
        io::IsTerminal::is_terminal(&io::stdin()) && io::IsTerminal::is_terminal(&io::stdout())
    }

    /// A new pseudo-terminal with the caller's modes and window size; the caller's terminal is
    /// in raw mode until this is dropped.
    pub fn open() -> io::Result<Terminal> {
        let stdin = io::stdin();
        let caller = rustix::termios::tcgetattr(&stdin)?;
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let command_side = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
        rustix::termios::tcsetattr(&command_side, OptionalActions::Now, &caller)?;
        follow_size(stdin.as_fd(), &command_side);
        let mut raw = caller.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Terminal {
            master,
            command_side: Some(command_side),
            caller,
        })
    }

    /// Makes `command` start with this terminal as its stdio and its controlling terminal, in a
    /// session of its own (so the caller's terminal is not its at all).
    pub fn attach(&self, command: &mut tokio::process::Command) -> io::Result<()> {
        let side = self
            .command_side
            .as_ref()
            .ok_or_else(|| io::Error::other("the terminal's command has started already"))?;
        command
            .stdin(Stdio::from(side.try_clone()?))
            .stdout(Stdio::from(side.try_clone()?))
            .stderr(Stdio::from(side.try_clone()?));
        // SAFETY: `setsid` and `ioctl` are async-signal-safe; stdin is the terminal by then.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
        Ok(())
    }

    /// Copies what the caller types to the command and what it prints back until `child`
    /// (started with [`Terminal::attach`]) exits, then restores the caller's terminal; the
    /// command's exit status.
    pub async fn relay(mut self, mut child: tokio::process::Child) -> io::Result<ExitStatus> {
        // The command holds its side now: once every process on it has gone, reading this side
        // ends (EIO), and the copy with it.
        self.command_side = None;
        let to_command = File::from(self.master.try_clone()?);
        let caller_input = File::from(rustix::io::dup(io::stdin())?);
        // Blocked reading the caller's terminal until the process exits.
        std::thread::spawn(move || copy(caller_input, to_command));
        let from_command = File::from(self.master.try_clone()?);
        let caller_output = File::from(rustix::io::dup(io::stdout())?);
        let (copied, all_copied) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            copy(from_command, caller_output);
            let _ = copied.send(());
        });
        let mut resized = signal(SignalKind::window_change())?;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                _ = resized.recv() => follow_size(io::stdin().as_fd(), &self.master),
            }
        };
        let _ = tokio::time::timeout(DRAIN, all_copied).await;
        Ok(status)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.caller);
    }
}

/// Gives `to` the window size of the caller's terminal `from`.
fn follow_size(from: BorrowedFd<'_>, to: &OwnedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(from) {
        let _ = rustix::termios::tcsetwinsize(to, size);
    }
}

/// Copies `from` to `to` until either ends (a terminal whose other side has closed reads EIO).
fn copy(mut from: File, mut to: File) {
    let mut buffer = [0u8; 8192];
    loop {
        match from.read(&mut buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
