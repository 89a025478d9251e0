//! Wake-ups across processes on one host, for SQLite.
//!
//! Every listening daemon binds a Unix datagram socket in a directory next to the database
//! (`drydock.db` → `drydock.db.wake/`), named by a random instance id: daemons in containers
//! sharing the volume may have the same process id, so a pid names no one. A process that
//! committed a post or a lease request sends one byte to each socket there, without blocking: a
//! daemon's wait ends within microseconds of the commit. A socket file nobody is bound to (its
//! daemon died) refuses the byte and is removed; a daemon removes its own when it stops. The
//! byte carries nothing: a lost one (a full socket buffer, a directory nobody may write) only
//! leaves the work to the next poll.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// Socket paths longer than this do not fit in `sockaddr_un`.
const MAX_SOCKET_PATH: usize = 107;

/// The wake-up directory of the database file `db`, or `None` for an in-memory database.
pub(super) fn dir_for(db: &Path) -> Option<PathBuf> {
    let name = db.file_name()?.to_string_lossy().into_owned();
    if name.is_empty() || name.starts_with(':') {
        return None;
    }
    Some(db.with_file_name(format!("{name}.wake")))
}

/// Pokes every daemon listening in `dir`; removes the socket files nobody is bound to.
pub(super) fn announce(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // nobody has listened yet
    };
    let Ok(sender) = UnixDatagram::unbound() else {
        return;
    };
    if sender.set_nonblocking(true).is_err() {
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "sock") {
            continue;
        }
        match sender.send_to(b"w", &path) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            // Sent, or the buffer is full (a wake-up is pending already), or a socket we may
            // not write to: nothing to do either way.
            _ => {}
        }
    }
}

/// How many daemons listen in `dir` now: the socket files someone is bound to (a connect,
/// which sends nothing, is refused by one nobody is).
pub(super) fn listening(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let bound = entries.flatten().filter(|entry| {
        let path = entry.path();
        path.extension().is_some_and(|ext| ext == "sock")
            && UnixDatagram::unbound().is_ok_and(|socket| socket.connect(&path).is_ok())
    });
    bound.count()
}

/// A bound socket that removes its file when dropped.
struct Bound {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A file name no other listener has: 128 random bits, whatever the process id.
fn socket_name() -> String {
    format!("{:032x}.sock", rand::random::<u128>())
}

/// Binds a socket of this listener's own in `dir` (creating the directory) and returns the
/// task that notifies `wake` for every byte received.
pub(super) fn listen(
    dir: &Path,
    wake: Arc<Notify>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(socket_name());
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes at most)",
                path.display()
            ),
        ));
    }
    let bound = Bound {
        socket: tokio::net::UnixDatagram::bind(&path)?,
        path,
    };
    Ok(tokio::spawn(async move {
        let mut buffer = [0u8; 64];
        loop {
            match bound.socket.recv(&mut buffer).await {
                Ok(_) => wake.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, "wake-up socket failed; posts from other processes wait for the poll");
                    return;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_directory_sits_next_to_the_database() {
        assert_eq!(
            dir_for(Path::new("/var/lib/drydock/drydock.db")),
            Some(PathBuf::from("/var/lib/drydock/drydock.db.wake"))
        );
        assert_eq!(dir_for(Path::new(":memory:")), None);
    }

    #[tokio::test]
    async fn an_announcement_wakes_a_listener_and_clears_dead_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let wake_dir = dir.path().join("db.wake");
        let wake = Arc::new(Notify::new());
        let task = listen(&wake_dir, wake.clone()).unwrap();
        // A daemon that died without cleaning up.
        let dead = wake_dir.join("1-dead.sock");
        drop(UnixDatagram::bind(&dead).unwrap());

        announce(&wake_dir);
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .expect("the listener is woken");
        assert!(!dead.exists(), "a dead daemon's socket is removed");

        task.abort();
        let _ = task.await;
        let left: Vec<_> = std::fs::read_dir(&wake_dir).unwrap().collect();
        assert!(left.is_empty(), "a stopped listener removes its socket");
    }

    /// Whether `socket` received a byte within ten seconds.
    async fn hears(socket: &tokio::net::UnixDatagram) -> bool {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut byte))
            .await
            .is_ok_and(|received| received.is_ok())
    }

    #[tokio::test]
    async fn a_daemon_with_the_same_pid_keeps_its_socket_and_its_wake_ups() {
        let dir = tempfile::tempdir().unwrap();
        let wake_dir = dir.path().join("db.wake");
        std::fs::create_dir_all(&wake_dir).unwrap();
        // Another daemon, in another pid namespace on the same volume, with our pid: its
        // sockets bear every name a pid-and-counter scheme would give ours.
        let pid = std::process::id();
        let others: Vec<_> = (0..64)
            .map(|n| {
                let path = wake_dir.join(format!("{pid}-{n}.sock"));
                (tokio::net::UnixDatagram::bind(&path).unwrap(), path)
            })
            .collect();

        let (first, second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let first_task = listen(&wake_dir, first.clone()).unwrap();
        let second_task = listen(&wake_dir, second.clone()).unwrap();
        announce(&wake_dir);
        for wake in [&first, &second] {
            tokio::time::timeout(Duration::from_secs(10), wake.notified())
                .await
                .expect("each listener is woken");
        }
        for (socket, path) in &others {
            assert!(path.exists(), "{} was removed", path.display());
            assert!(hears(socket).await, "{} heard nothing", path.display());
        }

        first_task.abort();
        let _ = first_task.await;
        announce(&wake_dir);
        tokio::time::timeout(Duration::from_secs(10), second.notified())
            .await
            .expect("a listener stopping leaves the other's socket");
        second_task.abort();
        let _ = second_task.await;
        let left = std::fs::read_dir(&wake_dir).unwrap().count();
        assert_eq!(
            left,
            others.len(),
            "only the other daemon's sockets are left"
        );
    }
}
