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
//!   devices or gain privileges through a setuid program. Its own IPC and UTS namespaces, and a
//!   new session with no controlling terminal; `drydock exec` at a terminal gives it a
//!   pseudo-terminal of its own instead, relayed to the caller's (`exec::terminal`), so nothing
//!   it types there (`TIOCSTI`) reaches the caller's shell.
//! - **Network.** A network namespace of its own with a loopback of its own and nothing else
//!   (`net=none`, the default): neither the machine's local services (the store, the daemon's
//!   API) nor anything beyond. A grant of `net=outbound` connects it to the outside through
//!   user-mode networking, with routes that refuse the machine's own addresses, link-local
//!   ones and the store's (`exec::outbound`). A grant of `net=host` shares the machine's network
//!   instead, and is shown as a warning (`Grant::warning`).
//! - **Descriptors.** Stdio alone: whatever else the daemon or `drydock exec` holds is marked
//!   close-on-exec before bubblewrap starts (`exec::descriptors`), but the descriptors of what
//!   it binds, which bubblewrap closes once they are mounted.
//! - **Files.** A mount namespace on an empty root, read-only, holding only:
//!   - read-only: the system's `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`, `/libx32`
//!     (those that exist; a link such as `/bin → usr/bin` stays a link), what programs need of
//!     `/etc` ([`ETC_ALLOWED`]: users and groups, name resolution, the CA certificates, the
//!     linker's cache, the time zone; not its keys nor other programs' configuration), and the
//!     paths its grant names with `ro=` (`local:/srv/hosts,ro=/srv/mirrors`; one that does not
//!     exist is left out). Each is opened once without following any link
//!     (`dir::open_exact`) and bound from that descriptor, so what was checked is what is
//!     mounted: an `ro=` path swapped for a link is refused, not followed;
//!   - read-write: the interface's root, at its own path, bound from the directory `exec::dir`
//!     opened beneath the grant (a link planted in its place is never followed); it is `HOME`,
//!     and the command starts in its `cwd` beneath it. **The root is the only writable place
//!     that outlives the exec**;
//!   - private, empty and gone with the exec: `/tmp` (at most the memory cap) and `/dev/shm`
//!     (a grant of `/tmp` or `/` itself shows the machine's `/tmp` instead, and a grant of `/`
//!     leaves the whole machine writable but for the system directories above, and shows all
//!     of `/etc`, read-only);
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
//! - **Shared with the machine**: the user (the daemon's, without capabilities, or the
//!   unprivileged one its grant names with `user=`, in a user namespace of its own:
//!   `exec::user`), the clocks, and with `net=host` the network.
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
pub use super::cgroup::{DEFAULT_MEMORY, DEFAULT_PIDS, Limits};
use super::descriptors::hand_on;
use super::dir::Opened;
use super::outbound::{Connection, Outbound};
use crate::grant::{LocalOptions, Network};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the bubblewrap program (`drydock serve --bwrap`).
pub const BWRAP_VAR: &str = "DRYDOCK_BWRAP";

/// The system directories every exec may read.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// What every exec may read of `/etc` (those that exist): users and groups, name resolution,
/// the CA certificates, the dynamic linker's cache, the time zone, the alternatives programs
/// are reached through, the shells' defaults. Nothing else of it (keys, credentials, other
/// programs' configuration) is there.
pub(super) const ETC_ALLOWED: [&str; 32] = [
    "passwd",
    "group",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "os-release",
    "debian_version",
    "mime.types",
    "profile",
    "bash.bashrc",
    "inputrc",
    "shells",
    "terminfo",
    "gitconfig",
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

    /// The same, also refusing `addresses` to execs of `net=outbound` (the store's).
    pub fn denying(&self, addresses: impl IntoIterator<Item = std::net::Ipv4Addr>) -> Confinement {
        match self {
            Confinement::Sandboxed(sandbox) => {
                let mut sandbox = sandbox.clone();
                sandbox.outbound = sandbox.outbound.map(|o| o.denying(addresses));
                Confinement::Sandboxed(sandbox)
            }
            other => other.clone(),
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
    /// What `net=outbound` needs, or why it cannot be had here.
    outbound: Result<Outbound, String>,
}

/// A confined command: bubblewrap's program and arguments, and the exec's cgroup.
pub(super) struct Wrapped {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cgroup: Option<ExecCgroup>,
    /// The descriptors of what it binds (but the root), which bubblewrap must inherit
    /// ([`hand_on`]) and closes before the command starts.
    pub fds: Vec<OwnedFd>,
    /// For `net=outbound`, its network, to connect once bubblewrap has started.
    pub network: Option<Connection>,
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
            outbound: Outbound::find(),
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
            let fds = std::iter::once(&opened.root).chain(&wrapped.fds);
            let handed = hand_on(fds.map(AsRawFd::as_raw_fd).collect());
            // SAFETY: async-signal-safe calls only; the descriptors stay open until the spawn
            // returns.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, handed);
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
            "local execs are confined by {} ({}): their own PID, mount and network namespaces \
             (a grant's net=host shares the machine's network), their root the only writable \
             path; {caps}",
            self.version,
            self.bwrap.display()
        )
    }

    /// Why a grant of `net=outbound` cannot work here, if it cannot.
    pub fn outbound_missing(&self) -> Option<&str> {
        self.outbound.as_ref().err().map(String::as_str)
    }

    /// Why execs run without caps, if they do.
    pub fn caps_missing(&self) -> Option<&str> {
        self.cgroups.as_ref().err().map(String::as_str)
    }

    /// bubblewrap's command line for `argv` in the sandbox of a local interface rooted at
    /// `root` (`opened` beneath its grant, whose `options` apply), and the exec's cgroup. The
    /// root's descriptor, and [`Wrapped::fds`], must be inherited by bubblewrap ([`hand_on`]),
    /// which closes them before the command starts. `new_session` detaches the command from any terminal.
    pub(super) fn wrap(
        &self,
        argv: &[String],
        root: &str,
        opened: &Opened,
        options: &LocalOptions,
        new_session: bool,
    ) -> Result<Wrapped, String> {
        let limits = Limits::of(options);
        let mut shown = Shown::default();
        // What the grant shows: the paths it lets execs read, and the root.
        for path in &options.read_only {
            shown.open(Path::new(path), Path::new(path), Rank::Granted)?;
        }
        let root_fd = opened.root.as_raw_fd();
        shown.binds.push(Bind {
            dest: root.into(),
            real: real_path(root_fd).map_err(|e| format!("reading where {root:?} is: {e}"))?,
            fd: root_fd,
            writable: true,
            rank: Rank::Granted,
        });
        // A grant of `/` (or of `/tmp`) shows the machine's own there: no private one on top.
        let granted_dests: Vec<PathBuf> = shown.binds.iter().map(|b| b.dest.clone()).collect();
        let granted = |dest: &str| granted_dests.iter().any(|d| Path::new(dest).starts_with(d));
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
                Ok(meta) if meta.is_dir() => {
                    shown.open(Path::new(dir), Path::new(dir), Rank::System)?
                }
                _ => {}
            }
        }
        // `/etc`: what programs need of it, unless a grant shows the machine's (then all of
        // it, read-only, with its secrets masked as below).
        match granted("/etc") {
            true => shown.open(Path::new("/etc"), Path::new("/etc"), Rank::System)?,
            false => {
                for name in ETC_ALLOWED {
                    let dest = Path::new("/etc").join(name);
                    // The machine's own configuration, which only root changes: its links
                    // (`localtime`, `os-release`, `resolv.conf`) are followed to what they name.
                    if let Ok(real) = std::fs::canonicalize(&dest) {
                        shown.open(&dest, &real, Rank::System)?;
                    }
                }
            }
        }
        let Shown { binds, mut fds } = shown;
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
        let network = match options.network() {
            Network::Host => None,
            Network::None => {
                args.push("--unshare-net".into());
                None
            }
            Network::Outbound => {
                let outbound = self.outbound.as_ref().map_err(Clone::clone)?;
                let (connection, [info, block]) = outbound
                    .prepare()
                    .map_err(|e| format!("preparing the exec's network: {e}"))?;
                args.push("--unshare-net".into());
                args.extend(["--info-fd".into(), info.as_raw_fd().to_string().into()]);
                args.extend(["--block-fd".into(), block.as_raw_fd().to_string().into()]);
                fds.extend([info, block]);
                Some(connection)
            }
        };
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
            fds,
            network,
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

/// What the sandbox shows of the machine, opened: the binds and the descriptors they are made
/// from (but the root's, which the caller holds).
#[derive(Default)]
struct Shown {
    binds: Vec<Bind>,
    fds: Vec<OwnedFd>,
}

impl Shown {
    /// Shows `real` read-only at `dest`, opened without following any link
    /// (`dir::open_exact`); a path that does not exist is left out.
    fn open(&mut self, dest: &Path, real: &Path, rank: Rank) -> Result<(), String> {
        let Some(fd) = super::dir::open_exact(real)? else {
            return Ok(());
        };
        let raw = fd.as_raw_fd();
        self.binds.push(Bind {
            dest: dest.into(),
            real: real_path(raw).map_err(|e| format!("reading where {real:?} is: {e}"))?,
            fd: raw,
            writable: false,
            rank,
        });
        self.fds.push(fd);
        Ok(())
    }
}

/// Where the descriptor `fd` really leads.
fn real_path(fd: RawFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

/// A path bound into the sandbox: where, what it really is, and from which descriptor; only the
/// root is writable.
struct Bind {
    dest: PathBuf,
    real: PathBuf,
    fd: RawFd,
    writable: bool,
    rank: Rank,
}

impl Bind {
    fn mount(&self) -> Mount {
        let how = match self.writable {
            true => "--bind-fd",
            false => "--ro-bind-fd",
        };
        Mount {
            args: vec![
                how.into(),
                self.fd.to_string().into(),
                self.dest.clone().into(),
            ],
            dest: self.dest.clone(),
            rank: self.rank,
        }
    }
}
