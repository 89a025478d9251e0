//! A shell lease whose exec is counted in the world, for the fault tests that disturb a
//! running exec (a killed or stopped daemon, a stalled store) on either backend: each run writes
//! `start` and `end` to a log under `flock`, and a second copy running at the same time writes
//! `overlap` instead.

use crate::{Daemon, Env, SHELL_WASM, wait_for, wait_lease};
use drydock_host::domain::LeaseStatus;
use drydock_host::store::{ObjectId, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shell blueprint running `script` under `flock`: a second copy running at the same time
/// writes `overlap` to the log instead.
pub fn guarded_script(dir: &Path, seconds: u32) -> serde_json::Value {
    let (lock, log) = (dir.join("lock"), dir.join("runs"));
    let body = format!(
        "echo start >> {log}; sleep {seconds}; echo end >> {log}",
        log = log.display()
    );
    let script = format!(
        "flock -n {} sh -c '{body}' || echo overlap >> {}",
        lock.display(),
        log.display()
    );
    json!({"argv": ["sh", "-c", script]})
}

/// The lines the runs wrote: `start`, `end`, `overlap`.
pub fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A shell lease whose run (counted in the world) has started under a daemon, which the test
/// then disturbs.
pub struct ShellRun {
    /// The database and the CLI.
    pub env: Env,
    world: PathBuf,
    /// A handle on the store.
    pub store: Arc<dyn Store>,
    /// The lease whose resource runs the script.
    pub lease: ObjectId,
    /// The daemon running it.
    pub first: Daemon,
    ttl: &'static str,
}

impl ShellRun {
    /// A run of `seconds` on `env` (a host pool and the shell blueprint are added) under a
    /// daemon whose claims last `ttl`; returns once it has started. The run's log is inside the
    /// host's root, the one place a confined exec may write.
    pub async fn start(env: Env, ttl: &'static str, seconds: u32) -> ShellRun {
        let host = env.dir().join("host");
        let world = host.join("world");
        std::fs::create_dir_all(&world).unwrap();
        env.add_host_pool_at(&host, &[]).await;
        let shell = guarded_script(&world, seconds);
        env.add_blueprint(
            "shell",
            SHELL_WASM,
            &shell.to_string(),
            &[crate::USE_HOST_POOL],
        )
        .await;
        let store = env.store().await;
        let first = env.serve(&["--claim-ttl", ttl]);
        let lease = env.request_one("shell", &[]).await;
        let run = ShellRun {
            env,
            world,
            store,
            lease,
            first,
            ttl,
        };
        run.wait_runs("start", 1).await;
        run
    }

    /// Stops the first daemon (SIGSTOP) between two of its write transactions. A SQLite file
    /// has one writer at a time: a daemon stopped inside a transaction would hold every other
    /// process's writes until it is continued, which no takeover can get round. So the test
    /// takes the write lock itself (`BEGIN IMMEDIATE`, waiting its turn), stops the daemon,
    /// which then cannot be writing, and lets go.
    pub async fn stop_first_between_writes(&self) {
        assert!(self.env.url.starts_with("sqlite:"), "SQLite only");
        let writer = crate::sqlite(&self.env.url);
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        self.first.signal("STOP");
        writer.execute_batch("ROLLBACK").unwrap();
    }

    /// A second daemon on the same database.
    pub fn second(&self) -> Daemon {
        self.env.serve(&["--claim-ttl", self.ttl])
    }

    /// Waits until the run log has `count` lines saying `what`.
    pub async fn wait_runs(&self, what: &str, count: usize) {
        wait_for(&format!("{count} × {what}"), || async {
            (runs(&self.world).iter().filter(|l| *l == what).count() >= count).then_some(())
        })
        .await;
    }

    /// Waits for the lease to be active, then checks that no two runs overlapped; the runs.
    pub async fn finished_without_overlap(&self) -> Vec<String> {
        wait_lease(&self.store, self.lease, LeaseStatus::Active).await;
        let runs = runs(&self.world);
        assert!(
            !runs.contains(&"overlap".to_string()),
            "two runs at once: {runs:?}"
        );
        runs
    }

    /// After the store stalled under a live daemon: the exec ran once, start to end, with no
    /// overlap, and the blueprint saw its own result (exit 0), not a kill's.
    pub async fn ran_once_to_its_end(&self) {
        let runs = self.finished_without_overlap().await;
        assert_eq!(runs, ["start", "end"], "the exec ran once, to its end");
        let resource = self.store.lease_get(self.lease).await.unwrap().resource_id;
        let resource = self.store.resource_get(resource.unwrap()).await.unwrap();
        assert_eq!(
            resource.attributes.get("exit").map(String::as_str),
            Some("0"),
            "the blueprint saw the command's own result: {:?}",
            resource.attributes
        );
    }
}
