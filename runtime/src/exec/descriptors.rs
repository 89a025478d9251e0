//! The descriptors an exec inherits: its stdio, and those its sandbox is handed on purpose.
//!
//! A program inherits every descriptor its parent did not mark close-on-exec. A daemon started
//! from a shell, a service manager or a test harness may hold some of theirs (a directory, a
//! socket, a database file); an exec given one could reach through it whatever it leads to
//! (`/proc/self/fd/7/..` lists the directory behind it, in any mount namespace). So each
//! `drydock` process marks what it inherited close-on-exec as it starts
//! ([`seal_inherited`]), and every process started for an exec (the guard, bubblewrap, the
//! command) begins from stdio and what is handed to it on purpose alone ([`hand_on`]: the
//! descriptors bubblewrap binds, which it closes before the command starts).

use std::io;
use std::os::fd::RawFd;

/// The first descriptor that is not stdio.
const FIRST: u32 = 3;

/// Marks every descriptor this process holds beyond stdio close-on-exec: called first thing
/// by every `drydock` process, so nothing it was started with reaches an exec.
pub fn seal_inherited() -> io::Result<()> {
    if close_range_cloexec().is_ok() {
        return Ok(());
    }
    // Kernels before 5.11: one at a time, those open.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd = entry?.file_name().to_string_lossy().parse::<i32>();
        if let Ok(fd) = fd.map(|fd| fd as u32)
            && fd >= FIRST
        {
            set_cloexec(fd as i32);
        }
    }
    Ok(())
}

/// The same between `fork` and `exec`, where only async-signal-safe calls may be made: marks
/// every descriptor beyond stdio close-on-exec, so the program about to start gets stdio and
/// what is then handed on alone.
fn seal_above_stdio() -> io::Result<()> {
    if close_range_cloexec().is_ok() {
        return Ok(());
    }
    // SAFETY: `getrlimit` is async-signal-safe and writes only `limit`.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let highest = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur.min(1 << 20) as i32,
        _ => 1 << 16,
    };
    for fd in FIRST as i32..highest {
        set_cloexec(fd);
    }
    Ok(())
}

/// What runs between `fork` and `exec` so that the program about to start (the guard or
/// bubblewrap) inherits stdio and `fds` alone: everything else is marked close-on-exec, then
/// `FD_CLOEXEC` is cleared on `fds`. The caller keeps them open until the spawn returns.
pub(super) fn hand_on(fds: Vec<RawFd>) -> impl FnMut() -> std::io::Result<()> + Send + Sync {
    move || {
        seal_above_stdio()?;
        for &fd in &fds {
            // SAFETY: the caller keeps `fd` open until the spawn returns.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        Ok(())
    }
}

/// `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: every descriptor beyond stdio, in one call.
fn close_range_cloexec() -> io::Result<()> {
    // SAFETY: the call only changes descriptor flags.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            FIRST,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Sets `FD_CLOEXEC` on `fd` if it is open.
fn set_cloexec(fd: i32) {
    // SAFETY: `fcntl` is async-signal-safe; on a closed descriptor it fails harmlessly.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_child_inherits_nothing_beyond_stdio_once_sealed() {
        let file = std::fs::File::open("/").unwrap();
        let fd = file.as_raw_fd();
        // Inheritable, as a launcher's descriptor would be.
        // SAFETY: `fd` is open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let listing = || {
            let out = std::process::Command::new("sh")
                .args(["-c", "ls /proc/$$/fd; true"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert!(listing().lines().any(|l| l == fd.to_string()));
        seal_inherited().unwrap();
        let seen: Vec<String> = listing().lines().map(String::from).collect();
        assert_eq!(seen, ["0", "1", "2"]);
    }
}
