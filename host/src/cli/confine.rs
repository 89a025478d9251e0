//! What `serve`, `exec` and `doctor` share about confining local execs (`exec::confine`): where
//! bubblewrap is, whether the operator chose to run execs unconfined, which of the daemon's
//! own files the sandbox hides, and which addresses (the store's) `net=outbound` refuses.

use crate::exec::Confinement;
use clap::Args;
use std::path::{Path, PathBuf};

/// How local execs are confined.
#[derive(Debug, Clone, Args)]
pub(super) struct ConfineArgs {
    /// bubblewrap, which confines local execs (default: `bwrap` in /usr/local/bin, /usr/bin or
    /// /bin).
    #[arg(long, env = crate::exec::confine::BWRAP_VAR, value_name = "PATH")]
    pub bwrap: Option<PathBuf>,
    /// Run local execs UNCONFINED, as this user: they can read and change whatever it can,
    /// and what they start can outlive them. For machines that cannot confine them (see
    /// `drydock doctor`); the web UI shows a warning while it is on.
    #[arg(long)]
    pub unconfined_exec: bool,
    /// Another path local execs must not see (repeatable): the daemon's database, its token
    /// file, SSH keys and /etc/drydock are hidden already, but `drydock exec` cannot know the
    /// daemon's --token-file.
    #[arg(long, value_name = "PATH")]
    pub hide: Vec<PathBuf>,
}

impl ConfineArgs {
    /// How local execs run here: confined if the machine can, hiding the database's files and
    /// `token_file` and refusing the store's addresses to `net=outbound`; unconfined if asked;
    /// else refused.
    pub fn detect(&self, database: &str, token_file: Option<&Path>) -> Confinement {
        let mut hidden = daemon_files(database, token_file);
        hidden.extend(self.hide.iter().filter_map(|p| std::path::absolute(p).ok()));
        Confinement::detect(self.bwrap.as_deref(), hidden, self.unconfined_exec)
            .denying(store_addresses(database))
    }

    /// Refuses the flags that shape a local exec's confinement (`--unconfined-exec`, `--hide`)
    /// for a command that runs on a server, whose own confinement applies: silently ignored,
    /// they would mislead. (`--bwrap` may come from the environment, so it is let be.)
    pub fn refuse_remote(&self) -> anyhow::Result<()> {
        let given = [
            ("--unconfined-exec", self.unconfined_exec),
            ("--hide", !self.hide.is_empty()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            anyhow::bail!(
                "{flag} shapes commands run on this machine; through --server the command runs \
                 on the server, confined as the server's execs are"
            );
        }
        Ok(())
    }
}

/// The IPv4 addresses of a PostgreSQL store's server (none for SQLite or a Unix socket), which
/// no exec may reach, even with `net=outbound` (`exec::outbound`).
pub(super) fn store_addresses(database: &str) -> Vec<std::net::Ipv4Addr> {
    use std::net::{SocketAddr, ToSocketAddrs};
    let Some(options) = (database.starts_with("postgres"))
        .then(|| database.parse::<sqlx::postgres::PgConnectOptions>().ok())
        .flatten()
    else {
        return Vec::new();
    };
    let host = options.get_host();
    if host.starts_with('/') {
        return Vec::new();
    }
    let resolved = (host, options.get_port()).to_socket_addrs();
    let addresses = resolved.into_iter().flatten().filter_map(|a| match a {
        SocketAddr::V4(v4) => Some(*v4.ip()),
        SocketAddr::V6(_) => None,
    });
    addresses.collect()
}

/// The daemon's own files, which no exec may see: a SQLite database with its `-wal`, `-shm`,
/// `-journal` and `.wake`, the operator token file, the user's `~/.ssh` and the SSH client
/// configuration (`DRYDOCK_SSH_CONFIG`). Those that do not exist are skipped when an exec starts.
pub(super) fn daemon_files(database: &str, token_file: Option<&Path>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(db) = super::sqlite_file(database) {
        for suffix in ["", "-wal", "-shm", "-journal", ".wake"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
    }
    files.extend(token_file.and_then(|f| std::path::absolute(f).ok()));
    files.extend(std::env::var_os("HOME").map(|home| Path::new(&home).join(".ssh")));
    files.extend(std::env::var_os(crate::exec::SSH_CONFIG_VAR).map(PathBuf::from));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_database_is_hidden_with_its_companions() {
        let files = daemon_files("sqlite:///srv/d/drydock.db", Some(Path::new("/etc/t")));
        for expected in [
            "/srv/d/drydock.db",
            "/srv/d/drydock.db-wal",
            "/srv/d/drydock.db-shm",
            "/srv/d/drydock.db-journal",
            "/srv/d/drydock.db.wake",
            "/etc/t",
        ] {
            assert!(
                files.contains(&PathBuf::from(expected)),
                "{expected}: {files:?}"
            );
        }
        let remote = daemon_files("postgres://u@h/db", None);
        assert!(remote.iter().all(|f| !f.starts_with("/srv")), "{remote:?}");
    }

    #[test]
    fn a_postgresql_stores_addresses_are_refused_and_a_sqlite_or_socket_store_has_none() {
        let loopback = std::net::Ipv4Addr::LOCALHOST;
        assert_eq!(
            store_addresses("postgres://u@127.0.0.1:5432/test"),
            [loopback]
        );
        assert!(store_addresses("postgresql://localhost/test").contains(&loopback));
        assert!(store_addresses("sqlite:drydock.db").is_empty());
        assert!(store_addresses("postgres:///test?host=/run/postgresql").is_empty());
    }
}
