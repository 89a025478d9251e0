//! Command interfaces are capabilities the operator grants (invariant I4).
//!
//! A blueprint's `interface` export says how to reach a resource (a local directory, an SSH
//! target), and the host runs commands there: for `exec` actions and `drydock exec`. A component
//! must not be able to point that anywhere it likes, so every interface it returns is checked
//! here before anyone uses it:
//!
//! - its fields are well formed (absolute, normalised paths; SSH names that cannot be read as
//!   options; no control characters);
//! - it **narrows** an interface of one of the resource's own supporting leases (the same SSH
//!   target, or a local directory beneath the leased host's root), which needs no grant: a
//!   working copy on a granted host works without one; or
//! - it lies inside one of the blueprint's [`Grant`]s, which the operator gives with
//!   `drydock blueprint add … --grant local:/srv/hosts --grant ssh:ci@build-*.example.com
//!   --grant ssh-key:/etc/drydock/keys`.
//!
//! A local grant also says what its execs may use beyond their root ([`LocalOptions`]):
//! `local:/srv/hosts,ro=/srv/mirrors,pids=256,memory=1G` lets them read `/srv/mirrors` and caps
//! each at 256 processes and 1 GiB (`exec::confine` has the whole sandbox and the defaults);
//! `user=ci` runs them as that unprivileged user (`exec::user`) and `env=GOPATH=/srv/go` sets a
//! variable in each (`exec::environment`). An interface that narrows a supporting lease's keeps
//! that lease's options.
//!
//! A grant may also be an **authorization** to hold supporting leases on another blueprint
//! (`use:host-pool`, given with `drydock blueprint authorize working-copy --use host-pool`):
//! without one, a blueprint's request for a supporting lease is refused (the host checks it in
//! `authorization`), so the commands another blueprint was granted are never lent to a
//! blueprint the operator did not name.
//!
//! No grant, no interface. The check is lexical; [`Authorized::anchor`] names the granted
//! directory a local root was authorised beneath (through any number of narrowings), and `exec`
//! opens the root from there without following any symbolic link, so a link a blueprint planted
//! (even in place of a leased host's root) is refused, not followed.

use crate::domain::CommandInterface;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path};
use std::str::FromStr;

/// One capability an operator gives a blueprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Grant {
    /// Local interfaces whose root is this directory or beneath it (`local:/srv/hosts`), with
    /// what their execs may use beyond it (`local:/srv/hosts,ro=/srv/mirrors,pids=256`).
    Local {
        /// Absolute, normalised directory.
        dir: String,
        /// Read-only paths and caps of its execs.
        options: LocalOptions,
    },
    /// SSH targets matching `user@host[:port]`; `*` in the user or host matches any run of
    /// characters (`ssh:ci@build-*.example.com`).
    Ssh {
        /// User pattern.
        user: String,
        /// Host pattern.
        host: String,
        /// The only port allowed; any port when `None`.
        port: Option<u16>,
    },
    /// SSH private keys in this directory or beneath it (`ssh-key:/etc/drydock/keys`).
    SshKey {
        /// Absolute, normalised directory.
        dir: String,
    },
    /// An authorization: supporting leases on the blueprint of this name, and commands through
    /// them (`use:host-pool`).
    Use {
        /// The name of the blueprint whose resources it may lease.
        blueprint: String,
    },
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Local { dir, options } => write!(f, "local:{dir}{options}"),
            Grant::Ssh { user, host, port } => {
                write!(f, "ssh:{user}@{host}")?;
                port.map_or(Ok(()), |port| write!(f, ":{port}"))
            }
            Grant::SshKey { dir } => write!(f, "ssh-key:{dir}"),
            Grant::Use { blueprint } => write!(f, "use:{blueprint}"),
        }
    }
}

impl FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "use local:/DIR[,ro=/PATH]…[,pids=N][,memory=SIZE][,user=NAME]\
                     [,env=NAME=VALUE]…[,net=none|outbound|host], ssh:USER@HOST[:PORT] \
                     (`*` matches any run of characters), ssh-key:/DIR or use:BLUEPRINT";
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("grant {text:?} has no kind; {usage}"))?;
        match kind {
            "local" => {
                let (dir, options) = rest.split_once(',').unwrap_or((rest, ""));
                Ok(Grant::Local {
                    dir: check_path("the local grant's directory", dir)?,
                    options: options
                        .parse()
                        .map_err(|why| format!("grant {text:?}: {why}; {usage}"))?,
                })
            }
            "ssh-key" => Ok(Grant::SshKey {
                dir: check_path("the ssh-key grant's directory", rest)?,
            }),
            "ssh" => parse_ssh_grant(rest).map_err(|why| format!("grant {text:?}: {why}; {usage}")),
            "use" => {
                crate::action::check_key("the use grant's blueprint name", rest)?;
                Ok(Grant::Use {
                    blueprint: rest.into(),
                })
            }
            other => Err(format!("grant kind {other:?} is unknown; {usage}")),
        }
    }
}

impl TryFrom<String> for Grant {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Grant> for String {
    fn from(grant: Grant) -> String {
        grant.to_string()
    }
}

impl Grant {
    /// What the operator should know this grant allows beyond the usual, if anything: execs on
    /// the machine's network (`net=host`). Shown by `drydock doctor` and the blueprint's page.
    pub fn warning(&self) -> Option<String> {
        match self {
            Grant::Local { options, .. } if options.network() == Network::Host => Some(format!(
                "{self}: its execs share the machine's network (net=host), so they reach every \
                 service listening on it (the store, the daemon's API, a cloud's metadata \
                 address) and the outside"
            )),
            _ => None,
        }
    }

    /// Whether granting `self` replaces `other` rather than adding to it: the same local
    /// directory with other options (granting it again changes them), or the same grant.
    pub fn replaces(&self, other: &Grant) -> bool {
        match (self, other) {
            (Grant::Local { dir, .. }, Grant::Local { dir: old, .. }) => dir == old,
            _ => self == other,
        }
    }
}

/// A change to a blueprint's grants, applied to whatever grants it holds when the change is
/// written (inside the store's transaction, so two changes at once never undo each other).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChange {
    /// Grants to add; a local directory granted again gets the new grant's options.
    pub grant: Vec<Grant>,
    /// Grants to take away; `local:DIR` revokes DIR's grant whatever its options.
    pub revoke: Vec<Grant>,
}

impl GrantChange {
    /// The grants `current` becomes, or the first grant to revoke that `current` does not
    /// hold.
    pub fn apply<'a>(&'a self, current: &[Grant]) -> Result<Vec<Grant>, &'a Grant> {
        let held = |g: &Grant| current.iter().any(|old| g.replaces(old));
        if let Some(missing) = self.revoke.iter().find(|g| !held(g)) {
            return Err(missing);
        }
        let mut grants: Vec<Grant> = current
            .iter()
            .filter(|old| !self.revoke.iter().any(|g| g.replaces(old)))
            .cloned()
            .collect();
        for g in &self.grant {
            match grants.iter_mut().find(|old| g.replaces(old)) {
                Some(old) => *old = g.clone(),
                None => grants.push(g.clone()),
            }
        }
        Ok(grants)
    }
}

/// What a local grant's execs may use beyond their root: paths they may read, their caps
/// (`exec::confine` applies them; the defaults are there), the user they run as and the
/// variables they see beside the fixed ones (`exec::environment`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOptions {
    /// Absolute, normalised paths execs may read (bound read-only at the same place): `ro=`.
    pub read_only: Vec<String>,
    /// The most processes (threads included) one exec may run at once: `pids=`.
    pub pids: Option<u32>,
    /// The most memory one exec may use, in bytes: `memory=` (`512M`, `2G`).
    pub memory: Option<u64>,
    /// The unprivileged user execs run as, by name or number (`user=ci`), rather than the
    /// daemon's; resolved when an exec starts (`exec::user`).
    pub user: Option<String>,
    /// Variables set in every exec, in order (`env=GOPATH=/srv/go`); a later one of the same
    /// name wins, and one may replace `PATH`, `LANG` or `LC_ALL`.
    pub env: Vec<(String, String)>,
    /// The network execs have (`net=none`, `net=outbound`, `net=host`); [`Network::None`] when
    /// not named.
    pub net: Option<Network>,
}

impl LocalOptions {
    /// The network its execs have: what `net=` says, else none.
    pub fn network(&self) -> Network {
        self.net.unwrap_or_default()
    }
}

/// The network a local grant's execs have (`net=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of their own with only a loopback of its own: nothing of the
    /// machine's network, its local services (the store, the daemon's API) nor the outside.
    #[default]
    None,
    /// The outside through user-mode networking (`exec::outbound`), and nothing of the machine:
    /// neither its own addresses (loopback included) nor link-local ones (a cloud's metadata)
    /// nor the store's.
    Outbound,
    /// The machine's own network, every local service included: the operator's explicit choice,
    /// shown as a warning by `drydock doctor` and on the blueprint's page.
    Host,
}

impl Network {
    /// As written after `net=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Outbound => "outbound",
            Network::Host => "host",
        }
    }
}

/// The variables of an exec that a grant may not set: the host sets them for each exec.
const FIXED_VARIABLES: [&str; 5] = ["HOME", "PWD", "TERM", "DRYDOCK_LEASE", "DRYDOCK_RESOURCE"];
/// The longest `user=` name accepted (as `useradd` does).
const MAX_USER_BYTES: usize = 32;
/// The longest `env=` value accepted.
const MAX_ENV_BYTES: usize = 4096;

/// The largest `pids=` accepted.
const MAX_PIDS: u32 = 1 << 22;
/// The smallest `memory=` accepted: room for the sandbox's own processes.
const MIN_MEMORY: u64 = 16 << 20;

impl FromStr for LocalOptions {
    type Err = String;

    /// `ro=/PATH`, `pids=N`, `memory=SIZE`, `user=NAME`, `env=NAME=VALUE` and `net=NETWORK`,
    /// separated by commas (none: the empty string).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut options = LocalOptions::default();
        for option in text.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("{option:?} is not an option such as ro=/PATH"))?;
            match key {
                "ro" => options
                    .read_only
                    .push(check_path("a read-only path (ro=)", value)?),
                "pids" => {
                    let pids = value.parse().ok().filter(|n| (1..=MAX_PIDS).contains(n));
                    options.pids = Some(pids.ok_or_else(|| {
                        format!("pids={value:?} must be a number of processes from 1 to {MAX_PIDS}")
                    })?);
                }
                "memory" => {
                    let memory = crate::size::parse(value).filter(|m| *m >= MIN_MEMORY);
                    options.memory = Some(memory.ok_or_else(|| {
                        format!(
                            "memory={value:?} must be a size of at least 16M, such as 512M or 2G"
                        )
                    })?);
                }
                "user" => options.user = Some(check_user(value)?),
                "env" => options.env.push(check_variable(value)?),
                "net" => {
                    options.net = Some(match value {
                        "none" => Network::None,
                        "outbound" => Network::Outbound,
                        "host" => Network::Host,
                        other => {
                            return Err(format!(
                                "net={other:?} is not a network: none (the default: a loopback \
                                 of its own), outbound (the outside, nothing of the machine) or \
                                 host (the machine's network, every local service included)"
                            ));
                        }
                    });
                }
                other => {
                    return Err(format!(
                        "{other:?} is not an option (ro, pids, memory, user, env, net)"
                    ));
                }
            }
        }
        Ok(options)
    }
}

impl fmt::Display for LocalOptions {
    /// As parsed, each option after a comma: `,ro=/a,pids=256,memory=1G`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in &self.read_only {
            write!(f, ",ro={path}")?;
        }
        if let Some(pids) = self.pids {
            write!(f, ",pids={pids}")?;
        }
        if let Some(memory) = self.memory {
            write!(f, ",memory={}", crate::size::format(memory))?;
        }
        if let Some(user) = &self.user {
            write!(f, ",user={user}")?;
        }
        for (name, value) in &self.env {
            write!(f, ",env={name}={value}")?;
        }
        if let Some(net) = self.net {
            write!(f, ",net={}", net.as_str())?;
        }
        Ok(())
    }
}

/// A `user=` value: a user name as `useradd` takes it, or a number; never root.
fn check_user(user: &str) -> Result<String, String> {
    let mut chars = user.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest = chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if user.len() > MAX_USER_BYTES || !first || !rest {
        return Err(format!(
            "user={user:?} is not a user name or number (letters, digits, '.', '_', '-', at \
             most {MAX_USER_BYTES})"
        ));
    }
    if user == "root" || user.parse::<u32>() == Ok(0) {
        return Err(format!(
            "user={user:?}: execs run as an unprivileged user, not root (leave user= out to \
             run them as the daemon's user)"
        ));
    }
    Ok(user.into())
}

/// An `env=NAME=VALUE` value: a portable variable name the host does not set itself, and a
/// value without control characters (nor commas, which separate options).
fn check_variable(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("env={text:?} needs NAME=VALUE"))?;
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "env={text:?}: {name:?} is not a variable name (letters, digits and '_', not \
             starting with a digit)"
        ));
    }
    if FIXED_VARIABLES.contains(&name) {
        return Err(format!(
            "env={text:?}: {name} is set by the host for each exec, not by a grant"
        ));
    }
    if value.len() > MAX_ENV_BYTES || value.chars().any(char::is_control) {
        return Err(format!(
            "env={text:?}: the value must be at most {MAX_ENV_BYTES} bytes without control \
             characters"
        ));
    }
    Ok((name.into(), value.into()))
}

fn parse_ssh_grant(text: &str) -> Result<Grant, String> {
    let (user, target) = text.split_once('@').ok_or("an ssh grant needs USER@HOST")?;
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{port:?} is not a port"))?;
            (host, Some(port))
        }
        None => (target, None),
    };
    check_name("user pattern", user, true)?;
    check_name("host pattern", host, true)?;
    Ok(Grant::Ssh {
        user: user.into(),
        host: host.into(),
        port,
    })
}

/// How a refusal here names the command that would allow what was refused, before the grant
/// itself: a registered blueprint's. `blueprint check` says `--grant ` in its place.
pub const GRANT_COMMAND: &str = "drydock blueprint grant NAME ";

/// An interface that passed the check, with what authorised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The interface, as the blueprint gave it.
    pub interface: CommandInterface,
    /// For a local interface: the granted directory its root lies beneath (for a narrowed one,
    /// the supporting lease's own anchor). Trusted as the operator typed it; commands open the
    /// root and their `cwd` from here without following any link below it.
    pub anchor: Option<String>,
    /// For a local interface: the options of the grant its anchor comes from (what its execs
    /// may read beyond the root, their caps); default for SSH.
    pub options: LocalOptions,
}

/// Checks `interface` from a blueprint with `grants`, for a resource whose supporting leases
/// reach `beneath`. The error says what is wrong or which grant would allow it.
pub fn authorize(
    interface: &CommandInterface,
    grants: &[Grant],
    beneath: &[Authorized],
) -> Result<Authorized, String> {
    check_interface(interface)?;
    let (anchor, options) = match interface {
        CommandInterface::Local { root } => {
            let (anchor, options) = local_anchor(root, grants, beneath)?;
            (Some(anchor), options)
        }
        CommandInterface::Ssh { .. } => {
            ssh_allowed(interface, grants, beneath)?;
            (None, LocalOptions::default())
        }
    };
    Ok(Authorized {
        interface: interface.clone(),
        anchor,
        options,
    })
}

/// The granted directory `root` lies beneath: a grant's, or, for a root narrowing a supporting
/// lease's, that lease's own anchor. Never the leased root itself: what lies below a grant may
/// have been replaced by a link since (`exec` opens everything below the anchor without
/// following one). With it, the options of the grant it comes from.
fn local_anchor(
    root: &str,
    grants: &[Grant],
    beneath: &[Authorized],
) -> Result<(String, LocalOptions), String> {
    let leased = beneath.iter().find_map(|a| match &a.interface {
        CommandInterface::Local { root: base } if is_beneath(root, base) => {
            Some((a.anchor.clone()?, a.options.clone()))
        }
        _ => None,
    });
    let granted = grants.iter().find_map(|g| match g {
        Grant::Local { dir, options } if is_beneath(root, dir) => {
            Some((dir.clone(), options.clone()))
        }
        _ => None,
    });
    leased.or(granted).ok_or_else(|| {
        format!(
            "the local root {root:?} is outside what the blueprint was granted ({}) and is not \
             beneath a supporting lease's root; an operator can allow it with \
             `{GRANT_COMMAND}local:{root}`",
            list(grants)
        )
    })
}

fn ssh_allowed(
    interface: &CommandInterface,
    grants: &[Grant],
    beneath: &[Authorized],
) -> Result<(), String> {
    let CommandInterface::Ssh {
        host,
        port,
        user,
        key_path,
        root,
    } = interface
    else {
        unreachable!("ssh_allowed is asked about SSH interfaces")
    };
    if beneath.iter().any(|a| narrows_ssh(&a.interface, interface)) {
        return Ok(());
    }

    let target = grants.iter().any(|g| match g {
        Grant::Ssh {
            user: u,
            host: h,
            port: p,
        } => glob(u, user) && glob(h, host) && p.is_none_or(|p| p == *port),
        _ => false,
    });
    let leased_root = beneath.iter().find_map(|a| match &a.interface {
        CommandInterface::Ssh { root, .. } if same_ssh_target(&a.interface, interface) => {
            root.as_deref()
        }
        _ => None,
    });
    if let (false, Some(base)) = (target, leased_root) {
        return Err(format!(
            "the SSH root {:?} is not beneath the supporting lease's root {base:?} on the same \
             target, and the target is not granted",
            root.as_deref().unwrap_or("(the login directory)")
        ));
    }
    if !target {
        return Err(format!(
            "the SSH target {user}@{host}:{port} is outside what the blueprint was granted ({}) \
             and is not a supporting lease's target; an operator can allow it with \
             `{GRANT_COMMAND}ssh:{user}@{host}`",
            list(grants)
        ));
    }
    let key = grants.iter().any(|g| match g {
        Grant::SshKey { dir } => is_beneath(key_path, dir),
        _ => false,
    });
    if !key {
        return Err(format!(
            "the SSH key {key_path:?} is outside the key directories the blueprint was granted \
             ({}); an operator can allow its directory with `{GRANT_COMMAND}ssh-key:DIR`",
            list(grants)
        ));
    }
    Ok(())
}

/// Whether `parent` and `child` reach the same SSH target (host, port, user and key).
fn same_ssh_target(parent: &CommandInterface, child: &CommandInterface) -> bool {
    let target = |i: &CommandInterface| match i {
        CommandInterface::Ssh {
            host,
            port,
            user,
            key_path,
            ..
        } => Some((host.clone(), *port, user.clone(), key_path.clone())),
        CommandInterface::Local { .. } => None,
    };
    target(parent).is_some_and(|t| Some(t) == target(child))
}

/// Whether `child` narrows `parent`: the same SSH target, starting in the parent's root or a
/// directory beneath it. A parent without a root starts at the login, from which the same
/// user reaches any directory anyway: an SSH root says where commands start, it confines
/// nothing.
fn narrows_ssh(parent: &CommandInterface, child: &CommandInterface) -> bool {
    let (CommandInterface::Ssh { root: base, .. }, CommandInterface::Ssh { root, .. }) =
        (parent, child)
    else {
        return false;
    };
    same_ssh_target(parent, child)
        && match (base, root) {
            (None, _) => true,
            (Some(base), Some(root)) => is_beneath(root, base),
            (Some(_), None) => false,
        }
}

fn list(grants: &[Grant]) -> String {
    match grants {
        [] => "no grants".into(),
        grants => grants
            .iter()
            .map(Grant::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Checks the fields of an interface, whoever gave it.
pub fn check_interface(interface: &CommandInterface) -> Result<(), String> {
    match interface {
        CommandInterface::Local { root } => check_path("the local root", root).map(drop),
        CommandInterface::Ssh {
            host,
            port,
            user,
            key_path,
            root,
        } => {
            check_name("SSH host", host, false)?;
            check_name("SSH user", user, false)?;
            if *port == 0 {
                return Err("SSH port 0 is not a port".into());
            }
            if let Some(root) = root {
                check_remote_dir(root)?;
            }
            check_path("the SSH key path", key_path).map(drop)
        }
    }
}

/// Longest path accepted.
const MAX_PATH_BYTES: usize = 1024;

/// An absolute, normalised path (`/a/b`, no `.`, `..`, `//` or trailing `/`) without control
/// characters; returned as given.
fn check_path(what: &str, path: &str) -> Result<String, String> {
    let normal = Path::new(path).components().enumerate().all(|(i, c)| {
        matches!(
            (i, c),
            (0, Component::RootDir) | (1.., Component::Normal(_))
        )
    });
    let rebuilt = Path::new(path).components().collect::<std::path::PathBuf>();
    let ok = path.starts_with('/')
        && normal
        && rebuilt.as_os_str() == path
        && path.len() <= MAX_PATH_BYTES
        && !path.chars().any(char::is_control);
    if !ok {
        return Err(format!(
            "{what} {:?} must be an absolute, normalised path (no `.`, `..`, `//` or trailing \
             `/`) of at most {MAX_PATH_BYTES} bytes without control characters",
            crate::text::clip(path, 80)
        ));
    }
    Ok(path.to_string())
}

/// An SSH interface's root: a normalised path (no `.`, `..`, `//` or trailing `/`), absolute or
/// relative to the login directory, of bounded length without control characters.
fn check_remote_dir(root: &str) -> Result<(), String> {
    let normal = Path::new(root)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let rebuilt = Path::new(root).components().collect::<std::path::PathBuf>();
    let ok = !root.is_empty()
        && normal
        && rebuilt.as_os_str() == root
        && root.len() <= MAX_PATH_BYTES
        && !root.chars().any(char::is_control);
    match ok {
        true => Ok(()),
        false => Err(format!(
            "the SSH root {:?} must be a normalised path (no `.`, `..`, `//` or trailing `/`) \
             of at most {MAX_PATH_BYTES} bytes without control characters",
            crate::text::clip(root, 80)
        )),
    }
}

/// An SSH host or user: letters, digits, `.`, `_`, `-` (and `:` for hosts, `*` in patterns),
/// not starting with `-`, so that `ssh` cannot read it as an option.
fn check_name(what: &str, name: &str, pattern: bool) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || "._-".contains(c)
            || (c == ':' && what.contains("host"))
            || (c == '*' && pattern)
    };
    if name.is_empty() || name.len() > 255 || name.starts_with('-') || !name.chars().all(allowed) {
        return Err(format!(
            "{what} {:?} must be 1 to 255 letters, digits, '.', '_' or '-'{}, not starting with '-'",
            crate::text::clip(name, 80),
            if pattern { " (and `*`)" } else { "" }
        ));
    }
    Ok(())
}

/// Refuses a read-only path (`ro=`) that lies in a directory a local grant makes writable,
/// among `blueprints` (each one's name and grants, a change already applied): an exec there
/// could replace it, or a directory on its way, with whatever it likes, and every exec given
/// that path would read it. The error names both grants. (Execs bind what they open without
/// following links whatever this says: `exec::confine`.)
pub fn check_read_only_paths(blueprints: &[(&str, &[Grant])]) -> Result<(), String> {
    let locals = || {
        blueprints.iter().flat_map(|(name, grants)| {
            grants.iter().filter_map(move |g| match g {
                Grant::Local { dir, options } => Some((*name, g, dir, options)),
                _ => None,
            })
        })
    };
    for (reader, grant, _, options) in locals() {
        for path in &options.read_only {
            if let Some((writer, writable, ..)) =
                locals().find(|(.., dir, _)| is_beneath(path, dir))
            {
                return Err(format!(
                    "ro={path} (in {reader}'s grant {grant}) lies in a directory the grant \
                     {writable} of {writer} makes writable: an exec there could replace it; \
                     name a path no grant makes writable"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `path` is `dir` or beneath it, component by component (both checked paths).
fn is_beneath(path: &str, dir: &str) -> bool {
    Path::new(path).starts_with(Path::new(dir))
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(root: &str) -> CommandInterface {
        CommandInterface::Local { root: root.into() }
    }

    fn ssh(user: &str, host: &str, port: u16, key: &str) -> CommandInterface {
        CommandInterface::Ssh {
            host: host.into(),
            port,
            user: user.into(),
            key_path: key.into(),
            root: None,
        }
    }

    /// `ci@build-1` starting in `root`.
    fn ssh_in(root: &str) -> CommandInterface {
        CommandInterface::Ssh {
            host: "build-1".into(),
            port: 22,
            user: "ci".into(),
            key_path: "/k/id".into(),
            root: Some(root.into()),
        }
    }

    fn grants(texts: &[&str]) -> Vec<Grant> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_use_grant_names_a_blueprint_and_authorizes_no_interface() {
        let grant: Grant = "use:host-pool".parse().unwrap();
        assert_eq!(
            grant,
            Grant::Use {
                blueprint: "host-pool".into()
            }
        );
        assert_eq!(grant.to_string(), "use:host-pool");
        for bad in ["use:", "use:Host Pool", "use:../x"] {
            let error = bad.parse::<Grant>().unwrap_err();
            assert!(error.contains("blueprint name"), "{bad}: {error}");
        }
        assert!(authorize(&local("/srv/hosts/a"), &[grant], &[]).is_err());
    }

    #[test]
    fn grants_parse_and_print() {
        for text in [
            "local:/srv/hosts",
            "local:/srv/hosts,ro=/srv/mirror,ro=/opt/tools,pids=256,memory=1G",
            "local:/srv/hosts,memory=1536M",
            "local:/srv/hosts,user=ci,env=GOPATH=/srv/go,env=PATH=/opt/go/bin:/usr/bin",
            "local:/srv/hosts,user=1001,env=EMPTY=",
            "ssh:ci@build-*.example.com",
            "ssh:*@10.0.0.5:2222",
            "ssh-key:/etc/drydock/keys",
        ] {
            assert_eq!(text.parse::<Grant>().unwrap().to_string(), text);
        }
        for bad in [
            "local:relative",
            "local:/a/../b",
            "local:/a/",
            "local:/a,ro=relative",
            "local:/a,ro=/b/",
            "local:/a,pids=0",
            "local:/a,pids=many",
            "local:/a,memory=1M",
            "local:/a,memory=2X",
            "local:/a,memory=G",
            "local:/a,net=on",
            "local:/a,ro",
            "local:/a,user=root",
            "local:/a,user=0",
            "local:/a,user=-x",
            "local:/a,user=a b",
            "local:/a,env=NOVALUE",
            "local:/a,env=1X=y",
            "local:/a,env=A-B=y",
            "local:/a,env=HOME=/x",
            "local:/a,env=DRYDOCK_LEASE=L1",
            "local:/a,env=X=a\tb",
            "ftp:/x",
            "ssh:host-only",
            "ssh:-oProxyCommand=x@h",
            "ssh:ci@h:0",
            "nothing",
        ] {
            assert!(bad.parse::<Grant>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn local_grant_options_are_parsed_and_granting_a_directory_again_replaces_them() {
        let grant: Grant = "local:/h,memory=2048M,ro=/r,pids=9".parse().unwrap();
        assert_eq!(grant.to_string(), "local:/h,ro=/r,pids=9,memory=2G");
        let Grant::Local { options, .. } = &grant else {
            panic!("{grant:?}")
        };
        assert_eq!(
            (options.read_only.as_slice(), options.pids, options.memory),
            (&["/r".to_string()][..], Some(9), Some(2 << 30))
        );
        let plain: Grant = "local:/h".parse().unwrap();
        assert!(grant.replaces(&plain) && plain.replaces(&grant));
        assert!(!grant.replaces(&"local:/h/x".parse().unwrap()));
        let err = "local:/h,ro=x".parse::<Grant>().unwrap_err();
        assert!(err.contains("a read-only path (ro=)"), "{err}");
    }

    #[test]
    fn a_grant_names_its_network_and_warns_about_the_machines() {
        let none: Grant = "local:/h".parse().unwrap();
        let Grant::Local { options, .. } = &none else {
            panic!("{none:?}")
        };
        assert_eq!(options.network(), Network::None);
        assert_eq!(none.warning(), None);
        let host: Grant = "local:/h,net=host".parse().unwrap();
        assert_eq!(host.to_string(), "local:/h,net=host");
        assert!(host.warning().unwrap().contains("net=host"));
        let outbound: Grant = "local:/h,net=outbound".parse().unwrap();
        assert_eq!(outbound.to_string(), "local:/h,net=outbound");
        assert_eq!(outbound.warning(), None);
        let err = "local:/h,net=all".parse::<Grant>().unwrap_err();
        assert!(err.contains("none") && err.contains("outbound"), "{err}");
    }

    #[test]
    fn a_read_only_path_in_a_writable_directory_is_refused_naming_both_grants() {
        let reader = grants(&["local:/srv/hosts,ro=/srv/git", "use:host-pool"]);
        let writer = grants(&["local:/srv/git/incoming"]);
        let beside = grants(&["local:/srv/gitlab"]);
        assert_eq!(
            check_read_only_paths(&[("pool", &reader), ("other", &writer), ("b", &beside)]),
            Ok(())
        );
        let around = grants(&["local:/srv"]);
        let err = check_read_only_paths(&[("pool", &reader), ("tmp", &around)]).unwrap_err();
        assert!(
            err.contains("ro=/srv/git")
                && err.contains("pool")
                && err.contains("local:/srv of tmp"),
            "{err}"
        );
        let own = grants(&["local:/srv/hosts,ro=/srv/hosts/mirror"]);
        assert!(check_read_only_paths(&[("pool", &own)]).is_err());
    }

    #[test]
    fn no_grant_no_interface() {
        let err = authorize(&local("/tmp/x"), &[], &[]).unwrap_err();
        assert!(err.contains("no grants"), "{err}");
        let err = authorize(&ssh("ci", "h", 22, "/k/id"), &[], &[]).unwrap_err();
        assert!(
            err.contains("outside what the blueprint was granted"),
            "{err}"
        );
    }

    #[test]
    fn local_roots_must_lie_beneath_a_grant() {
        let g = grants(&["local:/srv/hosts"]);
        let ok = authorize(&local("/srv/hosts/a"), &g, &[]).unwrap();
        assert_eq!(ok.anchor.as_deref(), Some("/srv/hosts"));
        authorize(&local("/srv/hosts"), &g, &[]).unwrap();
        for bad in [
            "/srv/hostsx",
            "/srv",
            "/",
            "/srv/hosts/../etc",
            "/srv/hosts/a/",
        ] {
            assert!(authorize(&local(bad), &g, &[]).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn narrowing_a_supporting_lease_needs_no_grant() {
        let host = Authorized {
            interface: local("/srv/hosts/a"),
            anchor: Some("/srv/hosts".into()),
            options: "pids=7".parse().unwrap(),
        };
        let ok = authorize(
            &local("/srv/hosts/a/wc-1"),
            &[],
            std::slice::from_ref(&host),
        )
        .unwrap();
        assert_eq!(
            ok.anchor.as_deref(),
            Some("/srv/hosts"),
            "the grant, not the leased root"
        );
        assert_eq!(ok.options.pids, Some(7), "and the grant's options");
        assert!(authorize(&local("/srv/hosts/b"), &[], std::slice::from_ref(&host)).is_err());

        let remote = Authorized {
            interface: ssh("ci", "build-1", 22, "/k/id"),
            anchor: None,
            options: LocalOptions::default(),
        };
        authorize(
            &ssh("ci", "build-1", 22, "/k/id"),
            &[],
            std::slice::from_ref(&remote),
        )
        .unwrap();
        assert!(authorize(&ssh("root", "build-1", 22, "/k/id"), &[], &[remote]).is_err());
    }

    #[test]
    fn an_ssh_lease_narrows_to_a_root_beneath_its_own() {
        let leased = |interface| Authorized {
            interface,
            anchor: None,
            options: LocalOptions::default(),
        };
        let login = [leased(ssh("ci", "build-1", 22, "/k/id"))];
        authorize(&ssh_in("copies/wc-1"), &[], &login).unwrap();
        authorize(&ssh_in("/srv/any"), &[], &login).unwrap();

        let rooted = [leased(ssh_in("/srv/build"))];
        authorize(&ssh_in("/srv/build/wc-1"), &[], &rooted).unwrap();
        authorize(&ssh_in("/srv/build"), &[], &rooted).unwrap();
        for bad in ["/srv/buildx", "/srv", "copies"] {
            let err = authorize(&ssh_in(bad), &[], &rooted).unwrap_err();
            assert!(
                err.contains("not beneath the supporting lease's root"),
                "{err}"
            );
        }
        let err = authorize(&ssh("ci", "build-1", 22, "/k/id"), &[], &rooted).unwrap_err();
        assert!(err.contains("(the login directory)"), "{err}");
        for bad in ["../etc", "a/../b", "a//b", "a/", "", "a\nb"] {
            let err = authorize(&ssh_in(bad), &[], &login).unwrap_err();
            assert!(err.contains("must be a normalised path"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ssh_needs_a_target_grant_and_a_key_grant() {
        let g = grants(&["ssh:ci@build-*.example.com", "ssh-key:/etc/drydock/keys"]);
        let good = ssh("ci", "build-7.example.com", 22, "/etc/drydock/keys/id");
        authorize(&good, &g, &[]).unwrap();
        let wrong_host = ssh("ci", "db.example.com", 22, "/etc/drydock/keys/id");
        assert!(authorize(&wrong_host, &g, &[]).is_err());
        let wrong_key = ssh("ci", "build-7.example.com", 22, "/root/.ssh/id_rsa");
        assert!(
            authorize(&wrong_key, &g, &[])
                .unwrap_err()
                .contains("key directories")
        );
        let pinned = grants(&["ssh:ci@h:2222", "ssh-key:/k"]);
        assert!(authorize(&ssh("ci", "h", 22, "/k/id"), &pinned, &[]).is_err());
        authorize(&ssh("ci", "h", 2222, "/k/id"), &pinned, &[]).unwrap();
    }

    #[test]
    fn ssh_fields_cannot_be_options_or_carry_control_characters() {
        let g = grants(&["ssh:*@*", "ssh-key:/k"]);
        for bad in [
            ssh("ci", "-oProxyCommand=touch /tmp/x", 22, "/k/id"),
            ssh("-l", "h", 22, "/k/id"),
            ssh("ci", "h\nx", 22, "/k/id"),
            ssh("ci", "h", 0, "/k/id"),
            ssh("ci", "h", 22, "/k/../etc/shadow"),
        ] {
            assert!(authorize(&bad, &g, &[]).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("build-*.example.com", "build-12.example.com"));
        assert!(!glob("build-*.example.com", "build-12.example.org"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "ab-"));
    }
}
