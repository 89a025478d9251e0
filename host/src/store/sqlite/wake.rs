//! Wake-ups across processes on one host, for SQLite.
//!
//! Every listening daemon binds a Unix datagram socket in a directory next to the database
//! (`drydock.db` → `drydock.db.wake/`). A process that committed a post or a lease request
//! sends one byte to each socket there, without blocking: a daemon's wait ends within
//! microseconds of the commit. A socket whose daemon died refuses the byte and is removed. The
//! byte carries nothing: a lost one (a full socket buffer, a directory nobody may write) only
//! leaves the work to the next poll.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Pokes every daemon listening in `dir`; removes the sockets of dead ones.
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

/// Binds this process's socket in `dir` (creating the directory) and returns the task that
/// notifies `wake` for every byte received.
pub(super) fn listen(
    dir: &Path,
    wake: Arc<Notify>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    std::fs::create_dir_all(dir)?;
    static LISTENERS: AtomicU64 = AtomicU64::new(0);
    let nth = LISTENERS.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{nth}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path); // left by an earlier process with our pid
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
}
