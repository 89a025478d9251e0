//! The unprivileged user a local exec runs as, when its grant names one (`user=ci`).
//!
//! Without one, an exec runs as the daemon's user (with no capabilities when confined). With
//! one, the exec's process (bubblewrap, or the command itself unconfined) drops to that user's
//! id, its primary group and no supplementary groups just before it starts, after it has joined
//! its cgroup; the exec's guard stays the daemon's, so it can still stop it. Confined, bubblewrap
//! then runs unprivileged in a user namespace of its own: the command has the user's ids and
//! nothing more. The root must be writable by that user for the exec to change anything: the
//! operator owns that (`chown ci /srv/hosts/*`). Dropping to another user needs the daemon to
//! run as root; otherwise such an exec is refused, saying so.

use std::io;

/// A user resolved on this machine: who an exec runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl RunAs {
    /// The user a grant names (`user=`), by name or number, as this machine knows it now; the
    /// error says why an exec cannot run as it.
    pub fn resolve(user: &str) -> Result<RunAs, String> {
        let found = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(uid.into()),
            Err(_) => nix::unistd::User::from_name(user),
        };
        let found = found
            .map_err(|e| format!("looking up the grant's user {user:?}: {e}"))?
            .ok_or_else(|| {
                format!("the grant runs execs as user {user:?}, which this machine does not have")
            })?;
        let run_as = RunAs {
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
        };
        let daemon = rustix::process::geteuid().as_raw();
        if run_as.uid == 0 {
            return Err(format!(
                "the grant's user {user:?} is root; execs run unprivileged"
            ));
        }
        if daemon != 0 && daemon != run_as.uid {
            return Err(format!(
                "the grant runs execs as user {user:?}, which needs the daemon to run as root \
                 (it runs as uid {daemon})"
            ));
        }
        Ok(run_as)
    }

    /// What drops the calling process to this user, to be called between `fork` and `exec`
    /// (after anything that needs the daemon's rights): no supplementary groups, the group,
    /// then the user. Only async-signal-safe system calls.
    pub fn dropper(self) -> impl Fn() -> io::Result<()> + Send + Sync + 'static {
        move || {
            // SAFETY: plain system calls on integers, async-signal-safe.
            let failed = unsafe {
                (libc::geteuid() == 0 && libc::setgroups(0, std::ptr::null()) != 0)
                    || libc::setgid(self.gid) != 0
                    || libc::setuid(self.uid) != 0
            };
            match failed {
                true => Err(io::Error::last_os_error()),
                false => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_and_number_and_root_or_strangers_are_refused() {
        let nobody = RunAs::resolve("nobody").expect("the machine has a nobody user");
        assert_eq!(RunAs::resolve(&nobody.uid.to_string()), Ok(nobody));
        let missing = RunAs::resolve("no-such-user-here").unwrap_err();
        assert!(missing.contains("does not have"), "{missing}");
        let root = RunAs::resolve("0").unwrap_err();
        assert!(root.contains("root"), "{root}");
    }
}
