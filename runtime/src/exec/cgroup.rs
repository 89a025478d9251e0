//! The caps of a confined exec: a cgroup of its own in each hierarchy that has the `pids` and
//! `memory` controllers, made beneath the cgroup of the process that starts it (the daemon, or
//! `drydock exec`), named `drydock-exec-PID-N` and removed when the exec has ended.
//!
//! cgroup v1 (`/sys/fs/cgroup/pids`, `/sys/fs/cgroup/memory`: `pids.max`,
//! `memory.limit_in_bytes`) and cgroup v2 (`pids.max`, `memory.max`, where the starting
//! process's cgroup hands both controllers to its children in `cgroup.subtree_control`) are
//! both used as found; [`Cgroups::detect`] says why not when neither works. The started process
//! (the exec's guard, or bubblewrap) joins the cgroups between `fork` and `exec`, so everything
//! the exec starts is counted from the first process on.

use crate::grant::LocalOptions;
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Processes (threads included) one exec may run at once unless its grant says `pids=`.
pub const DEFAULT_PIDS: u32 = 512;
/// Memory one exec may use, in bytes, unless its grant says `memory=`: 2 GiB.
pub const DEFAULT_MEMORY: u64 = 2 << 30;
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

/// A controller the caps need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Pids,
    Memory,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
        }
    }
}

/// One hierarchy's directory under which exec cgroups are made, and the controllers it caps.
#[derive(Debug, Clone)]
struct Parent {
    dir: PathBuf,
    v2: bool,
    controllers: Vec<Controller>,
}

/// Where this process makes its execs' cgroups.
#[derive(Debug, Clone)]
pub struct Cgroups {
    parents: Vec<Parent>,
}

/// Names this process's exec cgroups apart.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// Finds the hierarchies holding `pids` and `memory` for this process, and checks that a
    /// cgroup with both caps can be made there; the error says why not.
    pub fn detect() -> Result<Cgroups, String> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let mut parents: Vec<Parent> = Vec::new();
        for controller in [Controller::Pids, Controller::Memory] {
            let (dir, v2) = find(controller, &cgroups, &mounts)?;
            match parents.iter_mut().find(|p| p.dir == dir) {
                Some(parent) => parent.controllers.push(controller),
                None => parents.push(Parent {
                    dir,
                    v2,
                    controllers: vec![controller],
                }),
            }
        }
        let found = Cgroups { parents };
        found.sweep();
        drop(found.create(Limits::default())?);
        Ok(found)
    }

    /// Where the caps are applied, for the start log and `drydock doctor`.
    pub fn describe(&self) -> String {
        let dirs: Vec<String> = self
            .parents
            .iter()
            .map(|p| {
                let names: Vec<&str> = p.controllers.iter().map(|c| c.name()).collect();
                let version = if p.v2 { "v2" } else { "v1" };
                format!(
                    "{} (cgroup {version}: {})",
                    p.dir.display(),
                    names.join(", ")
                )
            })
            .collect();
        dirs.join("; ")
    }

    /// A new cgroup capped at `limits`, for one exec.
    pub fn create(&self, limits: Limits) -> Result<ExecCgroup, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("drydock-exec-{}-{n}", std::process::id());
        let mut made = ExecCgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for parent in &self.parents {
            let dir = parent.dir.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            made.dirs.push(dir.clone());
            for controller in &parent.controllers {
                let (file, value) = match (controller, parent.v2) {
                    (Controller::Pids, _) => ("pids.max", u64::from(limits.pids)),
                    (Controller::Memory, false) => ("memory.limit_in_bytes", limits.memory),
                    (Controller::Memory, true) => ("memory.max", limits.memory),
                };
                let path = dir.join(file);
                std::fs::write(&path, value.to_string())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            let procs = dir.join("cgroup.procs");
            let fd = rustix::fs::open(&procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("opening {}: {e}", procs.display()))?;
            made.procs.push(fd);
        }
        Ok(made)
    }

    /// Removes the exec cgroups left by processes that are gone (a daemon killed with SIGKILL
    /// cannot remove its own); one still in use is not empty, and stays.
    pub fn sweep(&self) {
        for parent in &self.parents {
            let Ok(entries) = std::fs::read_dir(&parent.dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let owner = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("drydock-exec-"))
                    .and_then(|rest| rest.split_once('-'))
                    .map(|(pid, _)| pid.to_string());
                if let Some(pid) = owner
                    && !Path::new("/proc").join(&pid).exists()
                {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    }
}

/// The directory of this process's cgroup holding `controller`: a v1 hierarchy that has it, or
/// the v2 one when the cgroup hands it to its children.
fn find(controller: Controller, cgroups: &str, mounts: &str) -> Result<(PathBuf, bool), String> {
    let name = controller.name();
    let v1 = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == name)
            .then(|| path.to_string())
    });
    if let Some(path) = v1 {
        let (root, point) = mount_of(mounts, |fstype, options| {
            fstype == "cgroup" && options.split(',').any(|o| o == name)
        })
        .ok_or_else(|| format!("the {name} cgroup hierarchy is not mounted"))?;
        return Ok((beneath(&point, &root, &path), false));
    }
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| format!("no cgroup hierarchy has the {name} controller"))?;
    let (root, point) = mount_of(mounts, |fstype, _| fstype == "cgroup2")
        .ok_or("the cgroup v2 hierarchy is not mounted")?;
    let dir = beneath(&point, &root, path);
    let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == name);
    if !delegated {
        return Err(format!(
            "no cgroup v1 hierarchy has the {name} controller, and {} does not hand it to its \
             children (cgroup.subtree_control)",
            dir.display()
        ));
    }
    Ok((dir, true))
}

/// The mount root and mount point of the first mount `wanted(fstype, super options)` accepts
/// (`/proc/self/mountinfo`: `ID PARENT DEV ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER`).
fn mount_of(mounts: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<(String, String)> {
    mounts.lines().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let head: Vec<&str> = head.split(' ').collect();
        let tail: Vec<&str> = tail.split(' ').collect();
        let (root, point) = (head.get(3)?, head.get(4)?);
        let (fstype, options) = (tail.first()?, tail.get(2).unwrap_or(&""));
        wanted(fstype, options).then(|| (root.to_string(), point.to_string()))
    })
}

/// Where cgroup `path` of a hierarchy whose `root` is mounted at `point` lies.
fn beneath(point: &str, root: &str, path: &str) -> PathBuf {
    let rest = Path::new(path)
        .strip_prefix(root)
        .unwrap_or(Path::new(path));
    let rest = rest.strip_prefix("/").unwrap_or(rest);
    match rest.as_os_str().is_empty() {
        true => PathBuf::from(point),
        false => Path::new(point).join(rest),
    }
}

/// One exec's cgroups, removed when dropped (once its last process has gone).
#[derive(Debug)]
pub struct ExecCgroup {
    dirs: Vec<PathBuf>,
    /// Each cgroup's `cgroup.procs`, open for the started process to join.
    procs: Vec<OwnedFd>,
}

impl ExecCgroup {
    /// What moves the calling process into every cgroup, to be called between `fork` and
    /// `exec`: it only writes to descriptors opened beforehand, which must stay open until then.
    pub fn joiner(&self) -> impl Fn() -> std::io::Result<()> + Send + Sync + 'static {
        let procs: Vec<RawFd> = self.procs.iter().map(AsRawFd::as_raw_fd).collect();
        move || {
            for fd in &procs {
                // SAFETY: the caller keeps the descriptors open until the program has started.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                rustix::io::write(fd, b"0")?;
            }
            Ok(())
        }
    }
}

impl Drop for ExecCgroup {
    /// Removes the cgroups. The last processes of a killed exec may take a moment to go, so
    /// what is still busy is retried on a thread of its own for a few seconds.
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        let left: Vec<PathBuf> = dirs
            .into_iter()
            .filter(|dir| std::fs::remove_dir(dir).is_err() && dir.exists())
            .collect();
        if left.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(50));
                if left
                    .iter()
                    .all(|dir| std::fs::remove_dir(dir).is_ok() || !dir.exists())
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:34 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_hierarchies_are_found_beneath_this_process_cgroup() {
        let cgroups = "8:pids:/\n4:memory:/service/abc\n0::/\n";
        assert_eq!(
            find(Controller::Pids, cgroups, MOUNTS).unwrap(),
            (PathBuf::from("/sys/fs/cgroup/pids"), false)
        );
        assert_eq!(
            find(Controller::Memory, cgroups, MOUNTS).unwrap(),
            (PathBuf::from("/sys/fs/cgroup/memory/service/abc"), false)
        );
    }

    #[test]
    fn a_v2_cgroup_that_keeps_its_controllers_is_refused_saying_so() {
        let err = find(Controller::Pids, "0::/nowhere-such\n", MOUNTS).unwrap_err();
        assert!(err.contains("does not hand it to its children"), "{err}");
    }

    #[test]
    fn a_mount_of_part_of_a_hierarchy_is_followed() {
        assert_eq!(
            beneath("/sys/fs/cgroup/pids", "/docker/x", "/docker/x/sub"),
            PathBuf::from("/sys/fs/cgroup/pids/sub")
        );
        assert_eq!(
            beneath("/sys/fs/cgroup/pids", "/", "/a/b"),
            PathBuf::from("/sys/fs/cgroup/pids/a/b")
        );
        assert_eq!(
            beneath("/sys/fs/cgroup/pids", "/", "/").as_os_str(),
            "/sys/fs/cgroup/pids"
        );
    }
}
