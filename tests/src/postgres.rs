//! Throwaway PostgreSQL clusters for tests and benchmarks: `initdb` into a temporary directory,
//! a server listening only on a Unix socket there, stopped (immediately) when dropped. Nothing
//! is assumed to be running; the server binaries come from the machine's PostgreSQL packages
//! (`/usr/lib/postgresql/<version>/bin`, or `DRYDOCK_PG_BIN`). When the tests run as root, the
//! server runs as the `postgres` user, as PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The role every test connects as.
const ROLE: &str = "drydock";
/// The port, which only names the socket file: each cluster has its own socket directory.
const PORT: u16 = 5432;

/// How much a cluster may lose in a crash of the machine (never of the server alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`: fast, for tests (a killed server loses nothing, a lost machine would).
    Tests,
    /// PostgreSQL's defaults, for benchmarks.
    Default,
}

/// A running throwaway cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    durability: Durability,
    databases: AtomicU32,
}

impl Cluster {
    /// Initialises and starts a cluster for tests. Panics, naming what is missing, when the
    /// PostgreSQL server binaries are not installed.
    pub fn start() -> Cluster {
        Self::start_with(Durability::Tests)
    }

    /// Initialises and starts a cluster.
    pub fn start_with(durability: Durability) -> Cluster {
        let bin = server_binaries();
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let cluster = Cluster {
            dir,
            bin,
            durability,
            databases: AtomicU32::new(0),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                ROLE,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.start_server();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a server binary (as the server's user when we are root), failing loudly.
    fn run(&self, program: &str, args: &[&str]) {
        let status = server_command(&self.bin.join(program), args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            status.success(),
            "{program} {args:?} failed ({status}); its log: {}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let mut options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c max_connections=200",
            self.socket_dir().display()
        );
        if self.durability == Durability::Tests {
            options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
    }

    /// Stops the server the way a crash would (`immediate`: no checkpoint, sessions cut).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-t",
                "60",
                "-m",
                "immediate",
                "-D",
                &self.data(),
            ],
        );
    }

    /// A crash and a start: every connection is lost, nothing committed is.
    pub fn restart(&self) {
        self.crash();
        self.start_server();
    }

    /// The URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}@localhost/{database}?host={}&port={PORT}",
            self.socket_dir().display()
        )
    }

    /// A new, empty database; its URL.
    pub async fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("drydock_{n}");
        self.sql(&format!("CREATE DATABASE {name}")).await;
        self.url(&name)
    }

    /// Writes `url`'s database (one of [`Cluster::database`]'s) to `out` as a plain SQL dump,
    /// without owners or privileges, so that any role loads it.
    pub fn dump(&self, url: &str, out: &Path) {
        let out = out.display().to_string();
        let mut args = self.client_args();
        args.extend(["--no-owner", "--no-privileges", "-f"].map(String::from));
        args.extend([out, "-d".into(), database_name(url).into()]);
        self.client("pg_dump", &args);
    }

    /// A new database holding what the plain SQL dump `dump` holds; its URL.
    pub async fn database_from(&self, dump: &Path) -> String {
        let url = self.database().await;
        let mut args = self.client_args();
        args.extend(["-q", "-v", "ON_ERROR_STOP=1", "-f"].map(String::from));
        args.extend([dump.display().to_string(), "-d".into()]);
        args.push(database_name(&url).into());
        self.client("psql", &args);
        url
    }

    /// Runs a client program (`psql`, `pg_dump`) of the cluster's version; fails with what it
    /// said unless it succeeds.
    fn client(&self, program: &str, args: &[String]) {
        let out = Command::new(self.binary(program))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs one statement as the superuser in the `postgres` database.
    pub async fn sql(&self, statement: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        conn.close().await.unwrap();
    }

    /// Cuts every connection that Drydock made (`pg_terminate_backend`); how many.
    pub async fn terminate_drydock_connections(&self) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap();
        let cut: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'drydock' AND pid <> pg_backend_pid()) AS cut",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        cut
    }

    /// A server binary such as `pgbench`, to run with [`Cluster::url`]'s socket and port.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `-h SOCKET_DIR -p PORT -U ROLE`, for the cluster's client programs.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.socket_dir().display().to_string(),
            "-p".into(),
            PORT.to_string(),
            "-U".into(),
            ROLE.into(),
        ]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = server_command(
            &self.bin.join("pg_ctl"),
            &["stop", "-m", "immediate", "-D", &self.data()],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    }
}

/// The database a [`Cluster::url`] names.
fn database_name(url: &str) -> &str {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// The newest installed server's `bin` directory; panics naming the package when none is.
fn server_binaries() -> PathBuf {
    if let Some(bin) = std::env::var_os("DRYDOCK_PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "the PostgreSQL tests need the server binaries (initdb, pg_ctl) in \
             /usr/lib/postgresql/<version>/bin: install Debian's postgresql package, or set \
             DRYDOCK_PG_BIN"
        )
    })
}

/// When we are root: the `postgres` user's ids, which the server must run as.
fn server_user() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root, the PostgreSQL tests need a `postgres` user to run the server");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

/// `program args…`, under `runuser -u postgres` when we are root.
fn server_command(program: &Path, args: &[&str]) -> Command {
    match server_user() {
        Some(_) => {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args);
            command
        }
        None => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }
}
