//! A throwaway OpenSSH server for tests: host and client keys made in a temporary directory,
//! `sshd` on a free loopback port as the user running the tests (it admits only that user, by
//! the client key), and an `ssh_config(5)` that trusts exactly that host key, for
//! `DRYDOCK_SSH_CONFIG`. Stopped when dropped. Needs Debian's `openssh-server` (`sshd`,
//! `ssh-keygen`, `ssh`); a missing binary fails the test naming the package.

use crate::PATIENCE;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server: sshd refuses to start unless run by an absolute path.
const SSHD: &str = "/usr/sbin/sshd";

/// A running server.
pub struct SshServer {
    dir: tempfile::TempDir,
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// The user it admits: the one running the tests.
    pub user: String,
}

impl SshServer {
    /// Makes keys and starts the server; returns once a login works.
    pub fn start() -> SshServer {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server"
        );
        let dir = tempfile::Builder::new().prefix("sshd").tempdir().unwrap();
        for key in ["host_key", "client_key"] {
            keygen(&dir.path().join(key));
        }
        let client_public = std::fs::read_to_string(dir.path().join("client_key.pub")).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), client_public).unwrap();
        if rustix::process::geteuid().is_root() {
            // sshd's privilege separation needs its empty directory when run as root.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let user = current_user();
        let port = free_port();
        let server = SshServer {
            child: start_sshd(dir.path(), port, &user),
            dir,
            port,
            user,
        };
        server.write_client_config();
        server.wait_until_ready();
        server
    }

    /// The client's private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The directory holding the client key (for an `ssh-key:` grant).
    pub fn key_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client configuration that trusts this server's host key (`DRYDOCK_SSH_CONFIG`).
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The grants a blueprint needs to reach this server.
    pub fn grants(&self) -> [String; 2] {
        [
            format!("ssh:{}@127.0.0.1:{}", self.user, self.port),
            format!("ssh-key:{}", self.key_dir().display()),
        ]
    }

    /// A host-pool host entry (JSON) for this server.
    pub fn host_entry(&self, name: &str) -> String {
        format!(
            r#"{{"name": "{name}", "interface": {{"type": "ssh", "host": "127.0.0.1", "port": {},
                 "user": "{}", "key_path": "{}"}}}}"#,
            self.port,
            self.user,
            self.key_path().display()
        )
    }

    fn write_client_config(&self) {
        let host_key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let known = self.dir.path().join("known_hosts");
        std::fs::write(&known, format!("[127.0.0.1]:{} {host_key}", self.port)).unwrap();
        let config = format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  IdentitiesOnly yes\n  ConnectTimeout 10\n  \
             LogLevel ERROR\n",
            known.display()
        );
        std::fs::write(self.client_config(), config).unwrap();
    }

    /// Runs `remote` (a shell line) on the server as its user; its output.
    pub fn run(&self, remote: &str) -> std::process::Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.client_config())
            .arg("-i")
            .arg(self.key_path())
            .args(["-o", "BatchMode=yes", "-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote)
            .stdin(Stdio::null())
            .output()
            .expect("ssh is missing: install Debian's openssh-client")
    }

    /// The directory a login starts in, where relative paths over SSH lead.
    pub fn home(&self) -> PathBuf {
        let out = self.run("pwd");
        assert!(out.status.success(), "pwd over ssh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    }

    /// Tries a login until one works; fails the test with the server's output if it exits.
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let login = self.run("true");
            if login.status.success() {
                return;
            }
            let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "no login to the test sshd on port {}: {}\nsshd said:\n{log}",
                self.port,
                String::from_utf8_lossy(&login.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen is missing: install Debian's openssh-client");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn start_sshd(dir: &Path, port: u16, user: &str) -> Child {
    let config = dir.join("sshd_config");
    let d = dir.display();
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nAllowUsers {user}\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {SSHD}: {error}"))
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
