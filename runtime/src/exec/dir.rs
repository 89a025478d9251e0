//! Opening a local command interface's working directory without following any link beneath
//! its grant.
//!
//! The root of a local interface was authorised lexically, beneath an anchor: the directory an
//! operator granted (`grant`; a narrowed interface keeps the anchor of the lease it narrows).
//! Here it is opened for real. The anchor is trusted as the operator typed it; every component
//! below it, of the root and then of the exec's `cwd`, is opened one at a time with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, missing root components created on the
//! way. A symbolic link anywhere below the anchor (a blueprint's exec may have planted one, even
//! in place of the root itself) is refused, naming it, and never followed. The result is a pair
//! of directory descriptors: the root's, which a confined exec's sandbox binds (`confine`), and
//! the `cwd`'s, which an unconfined command starts in (`fchdir` before `exec`), so nothing can
//! be swapped between the check and the start.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// A local interface's root and an exec's working directory beneath it, opened.
#[derive(Debug)]
pub struct Opened {
    /// The root.
    pub root: OwnedFd,
    /// The working directory.
    pub cwd: OwnedFd,
    /// The working directory's path (the root's and `cwd`'s components, `.` and `..` resolved).
    pub cwd_path: PathBuf,
}

/// Opens (creating what is missing) `root` beneath `anchor`, then `cwd` beneath the root,
/// following no symbolic link below the anchor.
pub fn open(anchor: &str, root: &str, cwd: Option<&str>) -> Result<Opened, String> {
    let rest = Path::new(root)
        .strip_prefix(anchor)
        .map_err(|_| format!("the root {root:?} is not beneath the grant {anchor:?}"))?;
    std::fs::create_dir_all(anchor).map_err(|e| format!("creating {anchor:?}: {e}"))?;
    let dir = rustix::fs::open(anchor, directory(), Mode::empty())
        .map_err(|e| format!("opening {anchor:?}: {e}"))?;
    let mut walk = Walk {
        anchor,
        path: PathBuf::from(anchor),
        dir,
    };
    for part in rest.iter() {
        walk.step(part, true)?;
    }
    let root_dir = walk
        .dir
        .try_clone()
        .map_err(|e| format!("opening {root:?}: {e}"))?;
    for part in cwd_parts(cwd.unwrap_or(""), root)? {
        walk.step(part, false)?;
    }
    Ok(Opened {
        root: root_dir,
        cwd: walk.dir,
        cwd_path: walk.path,
    })
}

/// Opens `path` (absolute, as the operator named it) to bind it into a sandbox, following no
/// symbolic link on the way nor at its end (`openat2(RESOLVE_NO_SYMLINKS)`), so what is bound is
/// what was opened, whatever is swapped in its place afterwards; `None` if it does not exist.
pub fn open_exact(path: &Path) -> Result<Option<OwnedFd>, String> {
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS;
    match rustix::fs::openat2(rustix::fs::CWD, path, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP) => Err(format!(
            "{path:?} is a symbolic link or lies through one; execs are shown only what can be \
             opened without following one: name the path it leads to"
        )),
        Err(Errno::NOSYS) => Err("this kernel lacks openat2 (Linux 5.6 or later is needed)".into()),
        Err(e) => Err(format!("opening {path:?}: {e}")),
    }
}

fn directory() -> OFlags {
    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC
}

/// The components of `cwd` beneath the root, `.` and `..` taken lexically (nothing below the
/// anchor is followed as a link, so the lexical parent is the real one); refuses an absolute
/// `cwd` or one whose `..` lead above the root.
fn cwd_parts<'a>(cwd: &'a str, root: &str) -> Result<Vec<&'a OsStr>, String> {
    let out = || format!("the working directory {cwd:?} leads out of the root {root:?}");
    let mut parts = Vec::new();
    for component in Path::new(cwd).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(out)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(out()),
        }
    }
    Ok(parts)
}

/// A descent from the anchor, one real directory at a time.
struct Walk<'a> {
    /// The granted directory it started from, for errors.
    anchor: &'a str,
    /// Where it is, for errors.
    path: PathBuf,
    /// The directory it is in.
    dir: OwnedFd,
}

impl Walk<'_> {
    /// Moves into `part` (creating it first if `create` and it is missing); refuses a symbolic
    /// link or anything else that is not a directory.
    fn step(&mut self, part: &OsStr, create: bool) -> Result<(), String> {
        self.path.push(part);
        if create {
            match rustix::fs::mkdirat(&self.dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(format!("creating {:?}: {e}", self.path)),
            }
        }
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        self.dir = rustix::fs::openat2(&self.dir, part, directory(), Mode::empty(), resolve)
            .map_err(|e| self.refusal(e))?;
        Ok(())
    }

    /// Why the current component could not be entered.
    fn refusal(&self, error: Errno) -> String {
        let (path, anchor) = (&self.path, self.anchor);
        match error {
            Errno::LOOP => format!(
                "{path:?} is a symbolic link; refusing to follow it beneath the grant {anchor:?}"
            ),
            Errno::NOTDIR => format!("{path:?} is not a directory"),
            Errno::NOENT => format!("{path:?} does not exist"),
            Errno::NOSYS => "this kernel lacks openat2 (Linux 5.6 or later is needed)".into(),
            other => format!("opening {path:?}: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn path_of(fd: &OwnedFd) -> String {
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
        std::fs::read_link(link)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// A granted directory in a fresh temporary one.
    fn granted() -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = tmp.path().join("granted").to_str().unwrap().to_string();
        std::fs::create_dir(&anchor).unwrap();
        (tmp, anchor)
    }

    fn refused_link(link: &str, anchor: &str) -> String {
        format!("{link:?} is a symbolic link; refusing to follow it beneath the grant {anchor:?}")
    }

    #[test]
    fn roots_are_created_beneath_the_anchor() {
        let (_tmp, anchor) = granted();
        let root = format!("{anchor}/a/b");
        let opened = open(&anchor, &root, None).unwrap();
        assert_eq!(path_of(&opened.cwd), root);
        assert_eq!(path_of(&opened.root), root);
        std::fs::create_dir(format!("{root}/sub")).unwrap();
        let opened = open(&anchor, &root, Some("sub")).unwrap();
        assert_eq!(path_of(&opened.cwd), format!("{root}/sub"));
        assert_eq!(opened.cwd_path, Path::new(&format!("{root}/sub")));
        assert_eq!(path_of(&opened.root), root);
        let err = open(&anchor, "/elsewhere", None).unwrap_err();
        assert!(err.contains("is not beneath the grant"), "{err}");
    }

    #[test]
    fn a_root_replaced_by_a_link_is_refused_naming_it() {
        let (_tmp, anchor) = granted();
        let host = format!("{anchor}/host-1");
        symlink("/", &host).unwrap();
        for root in [host.clone(), format!("{host}/etc")] {
            let err = open(&anchor, &root, None).unwrap_err();
            assert_eq!(err, refused_link(&host, &anchor), "{root}");
        }
        assert!(
            !Path::new("/etc/etc").exists(),
            "nothing was made through it"
        );
    }

    #[test]
    fn a_link_in_the_middle_of_the_root_is_refused_even_pointing_inside() {
        let (_tmp, anchor) = granted();
        std::fs::create_dir_all(format!("{anchor}/real/b")).unwrap();
        symlink("real", format!("{anchor}/a")).unwrap();
        let err = open(&anchor, &format!("{anchor}/a/b"), None).unwrap_err();
        assert_eq!(err, refused_link(&format!("{anchor}/a"), &anchor));
        let err = open(&anchor, &format!("{anchor}/real/b/c"), Some("x")).unwrap_err();
        assert!(err.ends_with("/real/b/c/x\" does not exist"), "{err}");
    }

    #[test]
    fn a_link_in_the_working_directory_is_refused_naming_it() {
        let (_tmp, anchor) = granted();
        let root = format!("{anchor}/root");
        std::fs::create_dir_all(format!("{root}/inside/deeper")).unwrap();
        symlink("/etc", format!("{root}/out")).unwrap();
        symlink("inside", format!("{root}/in")).unwrap();
        for (cwd, link) in [("out", "out"), ("in", "in"), ("in/deeper", "in")] {
            let err = open(&anchor, &root, Some(cwd)).unwrap_err();
            assert_eq!(
                err,
                refused_link(&format!("{root}/{link}"), &anchor),
                "{cwd}"
            );
        }
        std::fs::write(format!("{root}/file"), "").unwrap();
        let err = open(&anchor, &root, Some("file")).unwrap_err();
        assert!(err.ends_with("/root/file\" is not a directory"), "{err}");
    }

    #[test]
    fn dot_dot_cannot_lead_out_of_the_root() {
        let (_tmp, anchor) = granted();
        let root = format!("{anchor}/root");
        std::fs::create_dir_all(format!("{root}/inside")).unwrap();
        for cwd in ["..", "../root", "inside/../..", "/etc", "/"] {
            let err = open(&anchor, &root, Some(cwd)).unwrap_err();
            assert_eq!(
                err,
                format!("the working directory {cwd:?} leads out of the root {root:?}")
            );
        }
        for (cwd, expected) in [
            ("inside/../inside", "/inside"),
            ("./inside/..", ""),
            ("", ""),
        ] {
            let opened = open(&anchor, &root, Some(cwd)).unwrap();
            let expected = format!("{root}{expected}");
            assert_eq!(path_of(&opened.cwd), expected, "{cwd:?}");
            assert_eq!(opened.cwd_path, Path::new(&expected), "{cwd:?}");
        }
    }
}
