//! Opening a local command interface's working directory without letting links lead out.
//!
//! The root of a local interface was authorised lexically, beneath an anchor (a granted
//! directory or a supporting lease's root). Here it is opened for real: the anchor as the
//! operator named it, then each component of the root beneath it, created if missing and never
//! followed if it is a symbolic link; then the exec's `cwd` with `openat2(RESOLVE_BENEATH)`, so
//! a link inside the root may point anywhere within it but nowhere outside. The result is a
//! directory descriptor the command starts in (`fchdir` before `exec`), so nothing can be swapped
//! between the check and the start.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Opens (creating what is missing) `root` beneath `anchor`, then `cwd` beneath the root.
pub fn open(anchor: &str, root: &str, cwd: Option<&str>) -> Result<OwnedFd, String> {
    let rest = Path::new(root)
        .strip_prefix(anchor)
        .map_err(|_| format!("the root {root:?} is not beneath {anchor:?}"))?;
    std::fs::create_dir_all(anchor).map_err(|e| format!("creating {anchor}: {e}"))?;
    let mut dir = rustix::fs::open(anchor, directory(), Mode::empty())
        .map_err(|e| format!("opening {anchor}: {e}"))?;
    for part in rest.iter() {
        dir = step_down(&dir, part, root)?;
    }
    let Some(cwd) = cwd else {
        return Ok(dir);
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    rustix::fs::openat2(&dir, cwd, directory(), Mode::empty(), resolve).map_err(|e| match e {
        Errno::XDEV => format!("the working directory {cwd:?} leads out of the root {root}"),
        Errno::NOENT => format!("the working directory {cwd:?} does not exist in {root}"),
        Errno::NOSYS => "this kernel lacks openat2 (Linux 5.6 or later is needed)".to_string(),
        other => format!("opening the working directory {cwd:?} in {root}: {other}"),
    })
}

fn directory() -> OFlags {
    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC
}

/// Opens `part` beneath `dir`, creating it if missing; refuses a symbolic link.
fn step_down(dir: &OwnedFd, part: &std::ffi::OsStr, root: &str) -> Result<OwnedFd, String> {
    match rustix::fs::mkdirat(dir, part, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(format!("creating {part:?} of {root}: {e}")),
    }
    rustix::fs::openat(dir, part, directory() | OFlags::NOFOLLOW, Mode::empty()).map_err(
        |e| match e {
            Errno::LOOP | Errno::NOTDIR => format!(
                "{part:?} in the root {root} is a symbolic link or not a directory; a root must be \
                 made of real directories"
            ),
            other => format!("opening {part:?} of {root}: {other}"),
        },
    )
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

    #[test]
    fn roots_are_created_beneath_the_anchor() {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = tmp.path().join("granted");
        let anchor = anchor.to_str().unwrap();
        let root = format!("{anchor}/a/b");
        let fd = open(anchor, &root, None).unwrap();
        assert_eq!(path_of(&fd), root);
        std::fs::create_dir(format!("{root}/sub")).unwrap();
        assert_eq!(
            path_of(&open(anchor, &root, Some("sub")).unwrap()),
            format!("{root}/sub")
        );
    }

    #[test]
    fn links_cannot_lead_out_of_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = tmp.path().to_str().unwrap().to_string();
        let root = format!("{anchor}/root");
        std::fs::create_dir_all(format!("{root}/inside")).unwrap();
        symlink("/etc", format!("{root}/out")).unwrap();
        symlink("inside", format!("{root}/in")).unwrap();
        let err = open(&anchor, &root, Some("out")).unwrap_err();
        assert!(err.contains("leads out of the root"), "{err}");
        assert_eq!(
            path_of(&open(&anchor, &root, Some("in")).unwrap()),
            format!("{root}/inside")
        );
        let err = open(&anchor, &root, Some("missing")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_link_in_the_root_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = tmp.path().to_str().unwrap().to_string();
        symlink("/etc", format!("{anchor}/sneaky")).unwrap();
        let err = open(&anchor, &format!("{anchor}/sneaky"), None).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(open(&anchor, "/elsewhere", None).is_err());
    }
}
