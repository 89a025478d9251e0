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
//! slirp4netns only makes the namespace's `tap0`; the same `ip` batch that adds the routes
//! gives it its address (slirp4netns's default network, `10.0.2.100/24` behind `10.0.2.2`).
//! Left to configure it, slirp4netns would bring `lo` up, and the kernel give it `127.0.0.1`,
//! while bubblewrap may still be adding that address itself, which bubblewrap then takes for
//! a failure and gives up the sandbox.
//!
//! [slirp4netns]: https://github.com/rootless-containers/slirp4netns

use rustix::thread;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The program that gives execs user-mode networking, found on the exec `PATH`.
const SLIRP4NETNS: &str = "slirp4netns";
/// How long bubblewrap and slirp4netns each have to get ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// The sandbox's interface to slirp4netns, its MTU, its address and the gateway (slirp4netns's
/// defaults).
const TAP: &str = "tap0";
const MTU: u32 = 65520;
const GUEST: &str = "10.0.2.100/24";
const GATEWAY: &str = "10.0.2.2";
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

    /// Configures `tap0` in the sandbox's network namespace (entered through its user
    /// namespace when that is not ours), with routes that refuse the machine's addresses,
    /// link-local ones and the denied.
    async fn configure(&self, namespaces: &Namespaces) -> Result<(), String> {
        let mut routes = format!(
            "link set {TAP} mtu {MTU} up\n\
             addr add {GUEST} dev {TAP}\n\
             route add default via {GATEWAY} dev {TAP}\n\
             route add unreachable {}/{}\n",
            LINK_LOCAL.0, LINK_LOCAL.1
        );
        for address in machine_addresses()
            .into_iter()
            .chain(self.denied.iter().copied())
        {
            routes.push_str(&format!("route add unreachable {address}/32\n"));
        }
        let net_fd = namespaces.net.as_raw_fd();
        let user_fd = namespaces.user.as_ref().map(AsRawFd::as_raw_fd);
        let mut command = tokio::process::Command::new(&self.ip);
        command
            .args(["-4", "-batch", "-"])
            .env_clear()
            .env("PATH", super::EXEC_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: `setns`, `capset` and `prctl` are async-signal-safe, and the child has one
        // thread; both descriptors stay open until the spawn.
        unsafe {
            command.pre_exec(move || {
                if let Some(user_fd) = user_fd {
                    // Every capability in the owning namespace, where this process's user may
                    // map to no one: `ip` keeps the one it needs across `exec` as an ambient
                    // capability.
                    setns(user_fd, libc::CLONE_NEWUSER)?;
                    let mut sets = thread::capabilities(None)?;
                    sets.inheritable |= thread::CapabilitySet::NET_ADMIN;
                    thread::set_capabilities(None, sets)?;
                    thread::configure_capability_in_ambient_set(
                        thread::CapabilitySet::NET_ADMIN,
                        true,
                    )?;
                }
                setns(net_fd, libc::CLONE_NEWNET)
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
        // From here on the sandbox is known by these descriptors, not by its pid.
        let namespaces = Namespaces::of(pid)?;
        let (ready, ready_for_slirp) = std::io::pipe().map_err(|e| e.to_string())?;
        let (exit_for_slirp, exit) = std::io::pipe().map_err(|e| e.to_string())?;
        let mut command = tokio::process::Command::new(&outbound.slirp4netns);
        command
            .args([
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
                "--netns-type=path",
            ])
            .arg(format!("--mtu={MTU}"))
            .arg(format!("--ready-fd={}", ready_for_slirp.as_raw_fd()))
            .arg(format!("--exit-fd={}", exit_for_slirp.as_raw_fd()))
            .args(
                namespaces
                    .user
                    .as_ref()
                    .map(|user| format!("--userns-path=/proc/self/fd/{}", user.as_raw_fd())),
            )
            .arg(format!("/proc/self/fd/{}", namespaces.net.as_raw_fd()))
            .arg(TAP)
            .env_clear()
            .env("PATH", super::EXEC_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut handed = vec![ready_for_slirp.as_raw_fd(), exit_for_slirp.as_raw_fd()];
        handed.extend(namespaces.fds());
        // SAFETY: async-signal-safe calls only; every descriptor stays open until the spawn.
        unsafe {
            command.pre_exec(super::descriptors::hand_on(handed));
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
        outbound.configure(&namespaces).await?;
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

/// `setns(fd, kind)`, between `fork` and `exec`.
fn setns(fd: RawFd, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: `setns` only changes this process's namespaces; `fd` is open.
    match unsafe { libc::setns(fd, kind) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
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

/// The sandbox's network namespace, and the user namespace that owns it when that is not this
/// process's (bubblewrap made one: the exec runs as another user, or the daemon is not root),
/// held open from the moment bubblewrap names the process: slirp4netns and `ip` enter them
/// through these descriptors, so neither can reach another process's namespaces should the
/// sandbox's pid go and be given to another process meanwhile. The owner is asked of the
/// network namespace itself (`NS_GET_USERNS`): bubblewrap may nest a second user namespace
/// inside the first as it sets up, and only the owner's capabilities reach the routes.
struct Namespaces {
    net: OwnedFd,
    user: Option<OwnedFd>,
}

impl Namespaces {
    /// Opens the namespaces of `pid`; the error says the sandbox ended if it has.
    fn of(pid: u32) -> Result<Namespaces, String> {
        let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map(OwnedFd::from)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    "bubblewrap's sandbox ended before its network was connected".to_string()
                }
                _ => format!("opening the exec's network namespace: {e}"),
            })?;
        // SAFETY: `NS_GET_USERNS` takes no argument and returns a new descriptor, or -1.
        let owner = unsafe { libc::ioctl(net.as_raw_fd(), libc::NS_GET_USERNS) };
        if owner < 0 {
            let error = io::Error::last_os_error();
            return Err(format!("finding the owner of the exec's network: {error}"));
        }
        // SAFETY: the ioctl returned a descriptor of our own.
        let owner = unsafe { OwnedFd::from_raw_fd(owner) };
        let ours = std::fs::File::open("/proc/self/ns/user")
            .map_err(|e| format!("opening this process's user namespace: {e}"))?;
        let same = same_namespace(&owner, &ours)?;
        Ok(Namespaces {
            net,
            user: (!same).then_some(owner),
        })
    }
    /// Their descriptors, to hand on to a program that enters them.
    fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        std::iter::once(self.net.as_raw_fd()).chain(self.user.as_ref().map(AsRawFd::as_raw_fd))
    }
}

/// Whether two namespace descriptors name the same namespace (the same inode of `nsfs`).
fn same_namespace(a: &impl AsFd, b: &impl AsFd) -> Result<bool, String> {
    let stat = |fd| rustix::fs::fstat(fd).map_err(|e| format!("reading a namespace: {e}"));
    let (a, b) = (stat(a.as_fd())?, stat(b.as_fd())?);
    Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
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
