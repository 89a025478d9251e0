//! `net=outbound`: an exec reaches the outside through user-mode networking, and nothing of the
//! machine it runs on.
//!
//! Every confined exec has a network namespace of its own (`confine`). For a grant of
//! `net=outbound`, bubblewrap holds the command back (`--block-fd`) while whoever started it
//! connects that namespace to the outside with [slirp4netns], a user-mode TCP/IP stack: what
//! the command sends leaves as ordinary sockets of the slirp4netns process, which runs as the
//! daemon's user in a sandbox of its own (`--enable-sandbox`, `--enable-seccomp`) and goes when
//! the exec does (its exit descriptor closes with the exec, or with the daemon). Before the
//! command starts, its namespace gets routes that refuse, whatever it sends:
//!
//! - the machine itself: its loopback (slirp4netns's `--disable-host-loopback`) and every
//!   address of its interfaces (where the daemon's API, a PostgreSQL with trust auth or any
//!   local service also listens);
//! - link-local addresses, `169.254.0.0/16`, where clouds serve instance metadata and
//!   credentials;
//! - the store's addresses, and whatever else the daemon names ([`super::Confinement::denying`]).
//!
//! The command has no capabilities, so it cannot change those routes. Only IPv4 is offered.
//!
//! [slirp4netns]: https://github.com/rootless-containers/slirp4netns

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The program that gives execs user-mode networking, found on the exec `PATH`.
const SLIRP4NETNS: &str = "slirp4netns";
/// How long bubblewrap and slirp4netns each have to get ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Link-local addresses: clouds' instance metadata.
const LINK_LOCAL: (Ipv4Addr, u8) = (Ipv4Addr::new(169, 254, 0, 0), 16);

/// What `net=outbound` needs on this machine: slirp4netns and `ip` (iproute2), or why not.
#[derive(Debug, Clone)]
pub struct Outbound {
    slirp4netns: PathBuf,
    ip: PathBuf,
    /// More addresses no exec may reach (the store's).
    denied: Vec<Ipv4Addr>,
}

impl Outbound {
    /// Finds slirp4netns and `ip` on the exec `PATH`; the error says what is missing.
    pub fn find() -> Result<Outbound, String> {
        let find = |name: &str, package: &str| {
            let dirs = format!("{}:/usr/sbin:/sbin", super::EXEC_PATH);
            dirs.split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    format!(
                        "net=outbound needs {name} (install the {package} package; looked in \
                         {dirs})"
                    )
                })
        };
        Ok(Outbound {
            slirp4netns: find(SLIRP4NETNS, "slirp4netns")?,
            ip: find("ip", "iproute2")?,
            denied: Vec::new(),
        })
    }

    /// The same, also refusing `more`.
    pub(super) fn denying(&self, more: impl IntoIterator<Item = Ipv4Addr>) -> Outbound {
        let mut outbound = self.clone();
        outbound.denied.extend(more);
        outbound
    }

    /// Adds routes to the namespace of `pid` (entered through its user namespace `userns` when
    /// that is not ours) that refuse the machine's addresses, link-local ones and the denied.
    async fn refuse_the_machine(&self, pid: u32, userns: Option<&Path>) -> Result<(), String> {
        let mut routes = format!("route add unreachable {}/{}\n", LINK_LOCAL.0, LINK_LOCAL.1);
        for address in machine_addresses()
            .into_iter()
            .chain(self.denied.iter().copied())
        {
            routes.push_str(&format!("route add unreachable {address}/32\n"));
        }
        let open = |kind: &str| {
            std::fs::File::open(format!("/proc/{pid}/ns/{kind}"))
                .map_err(|e| format!("opening the exec's {kind} namespace: {e}"))
        };
        let net = OwnedFd::from(open("net")?);
        let user = match userns {
            Some(path) => Some(OwnedFd::from(
                std::fs::File::open(path).map_err(|e| format!("opening {path:?}: {e}"))?,
            )),
            None => None,
        };
        let (net_fd, user_fd) = (net.as_raw_fd(), user.as_ref().map(AsRawFd::as_raw_fd));
        let mut command = tokio::process::Command::new(&self.ip);
        command
            .args(["-4", "-batch", "-"])
            .env_clear()
            .env("PATH", super::EXEC_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: `setns` is async-signal-safe, and the child has one thread; both descriptors
        // stay open until the spawn.
        unsafe {
            command.pre_exec(move || {
                for (fd, kind) in [
                    (user_fd, libc::CLONE_NEWUSER),
                    (Some(net_fd), libc::CLONE_NEWNET),
                ] {
                    if let Some(fd) = fd
                        && libc::setns(fd, kind) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.ip.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let written = tokio::io::AsyncWriteExt::write_all(&mut stdin, routes.as_bytes()).await;
            written.map_err(|e| format!("routing the exec's network: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("routing the exec's network: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "routing the exec's network: {}",
                crate::text::clip(String::from_utf8_lossy(&out.stderr).trim(), 300)
            )),
        }
    }

    /// The pipes bubblewrap reports on (`--info-fd`) and waits on (`--block-fd`): its ends,
    /// to hand on to it, and the connection to make once it has started.
    pub(super) fn prepare(&self) -> io::Result<(Connection, [OwnedFd; 2])> {
        let (info, info_for_bwrap) = std::io::pipe()?;
        let (block_for_bwrap, block) = std::io::pipe()?;
        let connection = Connection {
            outbound: self.clone(),
            info: info.into(),
            block: block.into(),
        };
        Ok((connection, [info_for_bwrap.into(), block_for_bwrap.into()]))
    }
}

/// A sandbox's network, to connect once its bubblewrap has started.
pub struct Connection {
    outbound: Outbound,
    /// Where bubblewrap says which process holds the namespace.
    info: OwnedFd,
    /// What bubblewrap waits on before it starts the command.
    block: OwnedFd,
}

/// A sandbox connected to the outside: slirp4netns, stopped when this is dropped.
pub struct Link {
    _slirp4netns: tokio::process::Child,
    /// slirp4netns exits when this closes (with this, or with the process holding it).
    _exit: std::io::PipeWriter,
}

impl Connection {
    /// Connects the sandbox's namespace to the outside through slirp4netns, adds the routes
    /// that refuse the machine, and lets the command start.
    pub async fn connect(self) -> Result<Link, String> {
        let Connection {
            outbound,
            info,
            block,
        } = self;
        let read = tokio::task::spawn_blocking(move || read_child_pid(info));
        let pid = tokio::time::timeout(READY_WITHIN, read)
            .await
            .map_err(|_| "bubblewrap did not start the sandbox in time".to_string())?
            .map_err(|e| e.to_string())??;
        let userns = other_user_namespace(pid);
        let (ready, ready_for_slirp) = std::io::pipe().map_err(|e| e.to_string())?;
        let (exit_for_slirp, exit) = std::io::pipe().map_err(|e| e.to_string())?;
        let mut command = tokio::process::Command::new(&outbound.slirp4netns);
        command
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
            ])
            .arg(format!("--ready-fd={}", ready_for_slirp.as_raw_fd()))
            .arg(format!("--exit-fd={}", exit_for_slirp.as_raw_fd()))
            .args(userns.iter().map(|path| {
                let mut arg = OsString::from("--userns-path=");
                arg.push(path);
                arg
            }))
            .arg(pid.to_string())
            .arg("tap0")
            .env_clear()
            .env("PATH", super::EXEC_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let handed = vec![ready_for_slirp.as_raw_fd(), exit_for_slirp.as_raw_fd()];
        // SAFETY: async-signal-safe calls only; both descriptors stay open until the spawn.
        unsafe {
            command.pre_exec(super::confine::hand_on(handed));
        }
        let mut slirp4netns = command
            .spawn()
            .map_err(|e| format!("running {}: {e}", outbound.slirp4netns.display()))?;
        drop((ready_for_slirp, exit_for_slirp));
        let waited = tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            (&ready).read(&mut byte)
        });
        let ready = tokio::time::timeout(READY_WITHIN, waited).await;
        if !matches!(ready, Ok(Ok(Ok(1)))) {
            let _ = slirp4netns.start_kill();
            let mut why = String::new();
            if let Some(mut stderr) = slirp4netns.stderr.take() {
                let read = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut why);
                let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
            }
            return Err(format!(
                "slirp4netns could not connect the exec's network: {}",
                crate::text::clip(why.trim(), 300)
            ));
        }
        // What it says from now on is not read.
        if let Some(mut stderr) = slirp4netns.stderr.take() {
            tokio::spawn(async move { tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await });
        }
        outbound.refuse_the_machine(pid, userns.as_deref()).await?;
        let mut block = std::fs::File::from(block);
        block
            .write_all(b"1")
            .map_err(|e| format!("starting the command: {e}"))?;
        Ok(Link {
            _slirp4netns: slirp4netns,
            _exit: exit,
        })
    }
}

/// The process bubblewrap reports as holding the sandbox's namespaces (`{"child-pid": N}`).
fn read_child_pid(info: OwnedFd) -> Result<u32, String> {
    let mut text = String::new();
    let mut file = std::fs::File::from(info);
    let mut buffer = [0u8; 256];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("reading bubblewrap's report: {e}"))?;
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) {
            return report["child-pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| format!("bubblewrap's report names no process: {text}"));
        }
        if n == 0 {
            return Err("bubblewrap ended before its sandbox was set up".into());
        }
    }
}

/// The user namespace of `pid`, when it is not this process's (bubblewrap made one: the exec
/// runs as another user, or the daemon is not root).
fn other_user_namespace(pid: u32) -> Option<PathBuf> {
    let theirs = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let same =
        std::fs::read_link(&theirs).ok()? == std::fs::read_link("/proc/self/ns/user").ok()?;
    (!same).then_some(theirs)
}

/// Every IPv4 address of this machine's interfaces.
fn machine_addresses() -> Vec<Ipv4Addr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut addresses: Vec<Ipv4Addr> = interfaces
        .filter_map(|i| Some(i.address?.as_sockaddr_in()?.ip()))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}
