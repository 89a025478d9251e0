//! The sandbox of a local exec: everything it can see, change and use, in one place.
//!
//! Every local exec (a blueprint's exec action in the daemon, `drydock exec`) runs under
//! bubblewrap (`bwrap`, the tool Flatpak sandboxes applications with), started by the exec's
//! guard in the daemon or directly by `drydock exec`, with this shape:
//!
//! - **Processes.** A PID namespace of its own: the command sees only its own processes, and
//!   bubblewrap's init (pid 1 inside) starts it. When that init dies every process left in the
//!   namespace is killed by the kernel, whatever it did to get away (`setsid`, a double fork, a
//!   daemon): the init dies when the command exits, when the guard kills bubblewrap (the exec's
//!   timeout, a lost claim, the daemon stopping), and when the guard dies (the daemon killed with
//!   SIGKILL takes its guards with it: `PR_SET_PDEATHSIG`, bubblewrap's `--die-with-parent`).
//!   No capabilities, even for root (`--cap-drop ALL`, `no_new_privs`): it cannot mount, make
//!   devices or gain privileges through a setuid program. Its own IPC and UTS namespaces, a new
//!   session with no controlling terminal (but `drydock exec` at a terminal, which passes it
//!   through to the command).
//! - **Files.** A mount namespace on an empty root, read-only, holding only:
//!   - read-only: the system's `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`, `/libx32`
//!     and `/etc` (those that exist; a link such as `/bin → usr/bin` stays a link), and the
//!     paths its grant names with `ro=` (`local:/srv/hosts,ro=/srv/mirrors`; one that does not
//!     exist is left out);
//!   - read-write: the interface's root, at its own path, bound from the directory `exec::dir`
//!     opened beneath the grant (a link planted in its place is never followed); it is `HOME`,
//!     and the command starts in its `cwd` beneath it. **The root is the only writable place
//!     that outlives the exec**;
//!   - private, empty and gone with the exec: `/tmp` (at most the memory cap) and `/dev/shm`
//!     (a grant of `/tmp` or `/` itself shows the machine's `/tmp` instead, and a grant of `/`
//!     leaves the whole machine writable but for the system directories above);
//!   - its own `/proc` (`/proc/sys` read-only) and a minimal `/dev` (`null`, `zero`, `full`,
//!     `random`, `urandom`, `tty`, `pts`);
//!   - nothing else of the machine: not `/home`, `/root`, `/var`, `/srv`, `/run`, `/sys`,
//!     `/mnt`, the other grants' directories, nor the daemon's working directory.
//!
//!   Hidden even where one of those would show it (an empty directory or a file that cannot be
//!   opened in its place): the daemon's own files ([`Sandbox::probe`]'s `hidden`: its SQLite
//!   database with its `-wal`, `-shm`, `-journal` and `.wake`, its token file, the daemon
//!   user's `~/.ssh`, `DRYDOCK_SSH_CONFIG`, what `--hide` names), every directory any blueprint
//!   is granted SSH keys in (`ssh-key:`), `/etc/drydock`, and the machine's own secrets in
//!   `/etc` (`shadow`, `gshadow`, the SSH host keys). A root or `ro=` path inside one of those
//!   is refused. (`drydock exec` cannot know the daemon's `--token-file`: keep it in
//!   `/etc/drydock`, or outside every root and `ro=` path, or name it with `--hide`.)
//! - **Caps**, per exec, in a cgroup of its own (`exec::cgroup`, cgroup v1 or v2): at most
//!   [`DEFAULT_PIDS`] processes (threads included, and the exec's guard) and
//!   [`DEFAULT_MEMORY`] of memory (`/tmp` included) unless its grant says otherwise
//!   (`local:/srv/hosts,pids=256,memory=1G`). Where no cgroup can be made the daemon says so at
//!   start and in `drydock doctor`, and execs run without caps, confined all the same.
//! - **Shared with the machine**: the network (a `git clone` over HTTPS works), the user (the
//!   daemon's, without capabilities, or the unprivileged one its grant names with `user=`, in a
//!   user namespace of its own: `exec::user`), and the clocks.
//!
//! Where bubblewrap is missing or cannot build this sandbox (no user or PID namespaces),
//! [`Confinement::detect`] says why, the daemon says so at start and in `drydock doctor`, and
//! local execs are refused unless the operator chose [`Confinement::Unconfined`]
//! (`drydock serve --unconfined-exec`, shown as a warning in the web UI). The test kit
//! (`Harness::run_execs`, `blueprint check --exec run`) runs execs unconfined, as its user.
//! SSH execs are not confined here: the local `ssh` runs as the daemon's user (it needs the
//! key), and on the remote host the command runs as the SSH user in a session of its own,
//! killed as a whole when the exec ends (`exec::remote_line`).

use super::cgroup::{Cgroups, ExecCgroup};
use super::dir::Opened;
use crate::grant::LocalOptions;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Processes (threads included) one exec may run at once unless its grant says `pids=`.
pub const DEFAULT_PIDS: u32 = 512;
/// Memory one exec may use, in bytes, unless its grant says `memory=`: 2 GiB.
pub const DEFAULT_MEMORY: u64 = 2 << 30;
/// The environment variable naming the bubblewrap program (`drydock serve --bwrap`).
pub const BWRAP_VAR: &str = "DRYDOCK_BWRAP";

/// The caps of one exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Processes at once, threads included.
    pub pids: u32,
    /// Bytes of memory.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pids: DEFAULT_PIDS,
            memory: DEFAULT_MEMORY,
        }
    }
}

impl Limits {
    /// A grant's caps, the defaults where it names none.
    pub fn of(options: &LocalOptions) -> Limits {
        Limits {
            pids: options.pids.unwrap_or(DEFAULT_PIDS),
            memory: options.memory.unwrap_or(DEFAULT_MEMORY),
        }
    }
}

/// The system directories every exec may read.
const SYSTEM_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];
/// What is hidden in `/etc` from every exec (with the SSH host keys): the machine's password
/// hashes, and Drydock's own configuration directory (the conventional place of its token file
/// and keys, which `drydock exec` could not otherwise know).
const SYSTEM_SECRETS: [&str; 5] = [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/drydock",
];

/// How local execs run.
#[derive(Debug, Clone)]
pub enum Confinement {
    /// In the sandbox above.
    Sandboxed(Sandbox),
    /// Directly, as the daemon's user, with everything it can reach: the operator's choice
    /// (`--unconfined-exec`), and the test kit's.
    Unconfined,
    /// Not at all: this machine cannot confine them (why), and the operator did not choose to
    /// run them unconfined.
    Refused(String),
}

impl Confinement {
    /// `Unconfined` when the operator chose it; otherwise the sandbox if bubblewrap (`bwrap`,
    /// else [`BWRAP_VAR`], else found on the exec `PATH`) can build it here, hiding `hidden`;
    /// otherwise `Refused`, saying why.
    pub fn detect(bwrap: Option<&Path>, hidden: Vec<PathBuf>, unconfined: bool) -> Confinement {
        if unconfined {
            return Confinement::Unconfined;
        }
        match Sandbox::probe(bwrap, hidden) {
            Ok(sandbox) => Confinement::Sandboxed(sandbox),
            Err(why) => Confinement::Refused(why),
        }
    }

    /// What local execs get, in a sentence (the daemon's start, `drydock doctor`).
    pub fn describe(&self) -> String {
        match self {
            Confinement::Sandboxed(sandbox) => sandbox.describe(),
            Confinement::Unconfined => "local execs run UNCONFINED (--unconfined-exec): they \
                 can read and change whatever the daemon's user can, and what they start can \
                 outlive them"
                .into(),
            Confinement::Refused(why) => format!("local execs are refused: {why}"),
        }
    }

    /// The warning the web UI shows, when local execs are not confined.
    pub fn warning(&self) -> Option<String> {
        match self {
            Confinement::Sandboxed(_) => None,
            other => Some(other.describe()),
        }
    }

    /// The same, also hiding `more` (the SSH key directories granted to blueprints now).
    pub fn hiding(&self, more: impl IntoIterator<Item = PathBuf>) -> Confinement {
        match self {
            Confinement::Sandboxed(sandbox) => {
                let mut sandbox = sandbox.clone();
                sandbox.hidden.extend(more);
                Confinement::Sandboxed(sandbox)
            }
            other => other.clone(),
        }
    }
}

/// bubblewrap, found and working here, and what it hides.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    version: String,
    hidden: Vec<PathBuf>,
    /// Where the caps go, or why there are none.
    cgroups: Result<Arc<Cgroups>, String>,
}

/// A confined command: bubblewrap's program and arguments, and the exec's cgroup.
pub(super) struct Wrapped {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cgroup: Option<ExecCgroup>,
}

impl Sandbox {
    /// Finds bubblewrap and runs `true` in a sandbox of this shape (in a temporary root) to see
    /// that it works here; the error says why not.
    pub fn probe(bwrap: Option<&Path>, hidden: Vec<PathBuf>) -> Result<Sandbox, String> {
        let configured = bwrap
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(BWRAP_VAR).map(PathBuf::from));
        let bwrap = match configured {
            Some(path) if path.is_file() => path,
            Some(path) => return Err(format!("bubblewrap {} does not exist", path.display())),
            None => super::EXEC_PATH
                .split(':')
                .map(|dir| Path::new(dir).join("bwrap"))
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    format!(
                        "bubblewrap (bwrap) is not installed (looked in {}; install the \
                         bubblewrap package, or name it with {BWRAP_VAR})",
                        super::EXEC_PATH
                    )
                })?,
        };
        let version = std::process::Command::new(&bwrap)
            .arg("--version")
            .output()
            .map_err(|e| format!("running {}: {e}", bwrap.display()))?;
        let sandbox = Sandbox {
            version: String::from_utf8_lossy(&version.stdout).trim().to_string(),
            bwrap,
            hidden,
            cgroups: Cgroups::detect().map(Arc::new),
        };
        sandbox.try_it()?;
        Ok(sandbox)
    }

    /// Runs `true` in a sandbox rooted in a new temporary directory.
    fn try_it(&self) -> Result<(), String> {
        const PREFIX: &str = "drydock-confine-probe-";
        // Those of processes killed while probing, left behind.
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
        {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let owner = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
            let owner = owner
                .and_then(|rest| rest.split_once('-'))
                .map(|(pid, _)| pid);
            if owner.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let scratch = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            super::boottime_ms()
        ));
        let path = scratch.to_string_lossy().into_owned();
        let outcome = (|| {
            let opened = super::dir::open(&path, &path, None)?;
            let wrapped = self.wrap(
                &["true".into()],
                &path,
                &opened,
                &LocalOptions::default(),
                true,
            )?;
            let mut command = std::process::Command::new(&wrapped.program);
            command
                .args(&wrapped.args)
                .env_clear()
                .env("PATH", super::EXEC_PATH)
                .stdin(std::process::Stdio::null());
            let root = opened.root.as_raw_fd();
            // SAFETY: `fcntl` is async-signal-safe; `root` stays open until the spawn returns.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || inherit(root));
            }
            let out = command
                .output()
                .map_err(|e| format!("running {}: {e}", self.bwrap.display()))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{} cannot build the sandbox here ({}): {}",
                    self.bwrap.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        })();
        let _ = std::fs::remove_dir(&scratch);
        outcome
    }

    /// What execs get, in a sentence.
    pub fn describe(&self) -> String {
        let caps = match &self.cgroups {
            Ok(cgroups) => format!(
                "capped per exec at {DEFAULT_PIDS} processes and {} GiB of memory unless \
                 their grant says otherwise, in {}",
                DEFAULT_MEMORY >> 30,
                cgroups.describe()
            ),
            Err(why) => format!("WITHOUT process and memory caps ({why})"),
        };
        format!(
            "local execs are confined by {} ({}): their own PID and mount namespaces, their \
             root the only writable path; {caps}",
            self.version,
            self.bwrap.display()
        )
    }

    /// Why execs run without caps, if they do.
    pub fn caps_missing(&self) -> Option<&str> {
        self.cgroups.as_ref().err().map(String::as_str)
    }

    /// bubblewrap's command line for `argv` in the sandbox of a local interface rooted at
    /// `root` (`opened` beneath its grant, whose `options` apply), and the exec's cgroup. The
    /// root's descriptor must be inherited by bubblewrap ([`inherit`]), which closes it before
    /// the command starts. `new_session` detaches the command from any terminal.
    pub(super) fn wrap(
        &self,
        argv: &[String],
        root: &str,
        opened: &Opened,
        options: &LocalOptions,
        new_session: bool,
    ) -> Result<Wrapped, String> {
        let limits = Limits::of(options);
        let root_fd = opened.root.as_raw_fd();
        let root_real = std::fs::read_link(format!("/proc/self/fd/{root_fd}"))
            .map_err(|e| format!("reading where {root:?} is: {e}"))?;
        // What the grant shows: the paths it lets execs read, and the root.
        let mut binds: Vec<Bind> = (options.read_only.iter())
            .filter_map(|path| {
                let real = std::fs::canonicalize(path).ok()?;
                Some(Bind {
                    dest: path.into(),
                    real,
                    source: None,
                    rank: Rank::Granted,
                })
            })
            .collect();
        binds.push(Bind {
            dest: root.into(),
            real: root_real,
            source: Some(root_fd),
            rank: Rank::Granted,
        });
        // A grant of `/` (or of `/tmp`) shows the machine's own there: no private one on top.
        let shown: Vec<PathBuf> = binds.iter().map(|b| b.dest.clone()).collect();
        let granted = |dest: &str| shown.iter().any(|d| Path::new(dest).starts_with(d));
        let whole = granted("/");
        let mut mounts = vec![
            Mount::fixed(&["--proc", "/proc"], "/proc"),
            Mount::fixed(&["--ro-bind", "/proc/sys", "/proc/sys"], "/proc/sys"),
            Mount::fixed(
                &[
                    "--ro-bind-try",
                    "/proc/sysrq-trigger",
                    "/proc/sysrq-trigger",
                ],
                "/proc/sysrq-trigger",
            ),
            Mount::fixed(&["--dev", "/dev"], "/dev"),
            Mount::scratch("/dev/shm", limits.memory),
        ];
        if !granted("/tmp") {
            mounts.push(Mount::scratch("/tmp", limits.memory));
        }
        for dir in SYSTEM_DIRS {
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_symlink() && !granted(dir) => {
                    let target = std::fs::read_link(dir).map_err(|e| format!("{dir}: {e}"))?;
                    let args = vec!["--symlink".into(), target.into(), dir.into()];
                    mounts.push(Mount {
                        args,
                        dest: dir.into(),
                        rank: Rank::System,
                    });
                }
                Ok(meta) if meta.is_dir() => binds.push(Bind {
                    dest: dir.into(),
                    real: std::fs::canonicalize(dir).map_err(|e| format!("{dir}: {e}"))?,
                    source: None,
                    rank: Rank::System,
                }),
                _ => {}
            }
        }
        let hidden = self.hidden_now();
        for bind in &binds {
            if let Some(secret) = hidden.iter().find(|h| bind.real.starts_with(h)) {
                return Err(format!(
                    "{} lies in {}, which execs must not see (the daemon's own files, SSH keys \
                     or the machine's secrets)",
                    bind.dest.display(),
                    secret.display()
                ));
            }
        }
        for bind in &binds {
            for secret in &hidden {
                if let Ok(rest) = secret.strip_prefix(&bind.real) {
                    mounts.push(Mount::mask(&bind.dest.join(rest), secret.is_dir()));
                }
            }
        }
        mounts.extend(binds.iter().map(Bind::mount));
        // Outer directories first, so that what lies inside one is mounted over it; at the same
        // place the system's first, then the grant's, then the masks, which always win.
        mounts.sort_by_key(|m| (m.dest.components().count(), m.rank));

        let mut args: Vec<OsString> = [
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
        ]
        .map(OsString::from)
        .into();
        if new_session {
            args.push("--new-session".into());
        }
        args.extend(mounts.into_iter().flat_map(|m| m.args));
        if !whole {
            args.extend(["--remount-ro".into(), "/".into()]);
        }
        args.extend(["--chdir".into(), opened.cwd_path.clone().into()]);
        args.push("--".into());
        args.extend(argv.iter().map(OsString::from));
        let cgroup = match &self.cgroups {
            Ok(cgroups) => Some(cgroups.create(limits)?),
            Err(_) => None,
        };
        Ok(Wrapped {
            program: self.bwrap.clone().into(),
            args,
            cgroup,
        })
    }

    /// What is hidden now, as real paths: the configured files and directories, and the
    /// machine's secrets, those that exist.
    fn hidden_now(&self) -> Vec<PathBuf> {
        let host_keys = std::fs::read_dir("/etc/ssh")
            .into_iter()
            .flatten()
            .flatten();
        let host_keys = host_keys.map(|e| e.path()).filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("ssh_host_") && name.ends_with("_key")
        });
        let mut hidden: Vec<PathBuf> = self
            .hidden
            .iter()
            .cloned()
            .chain(SYSTEM_SECRETS.iter().map(PathBuf::from))
            .chain(host_keys)
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        hidden.sort();
        hidden.dedup();
        hidden
    }
}

/// Clears `FD_CLOEXEC` on `fd`, so that the program about to start inherits it. Called between
/// `fork` and `exec`.
pub(super) fn inherit(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: the caller keeps `fd` open until the spawn returns.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(Into::into)
}

/// In what order mounts at the same depth go: the system's, the grant's, then the masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    System,
    Granted,
    Mask,
}

/// One of bubblewrap's mount arguments, and where it mounts.
struct Mount {
    args: Vec<OsString>,
    dest: PathBuf,
    rank: Rank,
}

impl Mount {
    fn fixed(args: &[&str], dest: &str) -> Mount {
        Mount {
            args: args.iter().map(OsString::from).collect(),
            dest: dest.into(),
            rank: Rank::System,
        }
    }

    /// A private, empty, writable directory of at most `size` bytes.
    fn scratch(dest: &str, size: u64) -> Mount {
        let size = size.to_string();
        Mount::fixed(&["--perms", "1777", "--size", &size, "--tmpfs", dest], dest)
    }

    /// An empty read-only directory, or an empty file, in place of a secret.
    fn mask(dest: &Path, dir: bool) -> Mount {
        let args = match dir {
            true => vec![
                "--perms".into(),
                "0000".into(),
                "--tmpfs".into(),
                dest.into(),
                "--remount-ro".into(),
                dest.into(),
            ],
            false => vec!["--ro-bind".into(), "/dev/null".into(), dest.into()],
        };
        Mount {
            args,
            dest: dest.into(),
            rank: Rank::Mask,
        }
    }
}

/// A directory bound into the sandbox: where, what it really is, and from which descriptor (the
/// root, writable) or path (read-only).
struct Bind {
    dest: PathBuf,
    real: PathBuf,
    source: Option<std::os::fd::RawFd>,
    rank: Rank,
}

impl Bind {
    fn mount(&self) -> Mount {
        let args = match self.source {
            Some(fd) => vec![
                "--bind-fd".into(),
                fd.to_string().into(),
                self.dest.clone().into(),
            ],
            None => vec![
                "--ro-bind".into(),
                self.real.clone().into(),
                self.dest.clone().into(),
            ],
        };
        Mount {
            args,
            dest: self.dest.clone(),
            rank: self.rank,
        }
    }
}
