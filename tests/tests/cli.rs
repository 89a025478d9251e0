//! `drydock blueprint check`, run as the real binary on the built components; and how every
//! command opens the database: reads never create, lock or migrate it, writes never upgrade it,
//! and a database that cannot be used is named with the reason.

use drydock_host::scheduler::Load;
use drydock_tests::postgres::Cluster;
use drydock_tests::{Env, FUTURE_CONTRACT_WASM, HOST_POOL_CONFIG, HOST_POOL_WASM, drydock_binary};
use sqlx::migrate::Migrator;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn drydock(args: &[&str], stdin: Option<&str>) -> Output {
    // One compile cache for the whole test binary, so each component is compiled once.
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    let mut child = Command::new(drydock_binary().unwrap())
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_description_and_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hosts.json");
    std::fs::write(&config, HOST_POOL_CONFIG).unwrap();
    let out = drydock(
        &[
            "blueprint",
            "check",
            HOST_POOL_WASM,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("name:             host-pool"), "{stdout}");
    assert!(stdout.contains("resource type:    host"), "{stdout}");
    assert!(
        stdout.contains("contract version: drydock:blueprint@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("\"hosts\""), "{stdout}");
    assert!(stdout.contains("config:           valid"), "{stdout}");
}

#[test]
fn check_prints_json_for_scripts() {
    let out = drydock(&["blueprint", "check", HOST_POOL_WASM, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "host-pool");
    assert_eq!(report["resource_type"], "host");
    assert_eq!(report["contract_version"], "0.2.0");
    assert_eq!(report["config_schema"]["type"], "object");
}

#[test]
fn check_refuses_empty_and_malformed_configs_with_the_reason() {
    for (config, reason) in [
        (r#"{"hosts": []}"#, "`hosts` is empty"),
        (r#"{"hosts": [{"name": "x"}]}"#, "missing field `interface`"),
        ("{", "EOF while parsing"),
    ] {
        let out = drydock(
            &["blueprint", "check", HOST_POOL_WASM, "--config", "-"],
            Some(config),
        );
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{config} was accepted");
        assert!(stderr.contains("config - is invalid"), "{stderr}");
        assert!(stderr.contains(reason), "{config}: {stderr}");
    }
}

#[test]
fn check_refuses_a_bad_component_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let out = drydock(&["blueprint", "check", junk.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        text(&out.stderr)
    );

    let out = drydock(&["blueprint", "check", FUTURE_CONTRACT_WASM], None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("drydock:blueprint@0.3.0") && stderr.contains("drydock:blueprint@0.2.0"),
        "{stderr}"
    );

    let out = drydock(&["blueprint", "check", "/nonexistent/x.wasm"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("reading /nonexistent/x.wasm"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs `drydock ARGS…`, which must fail; its stderr.
async fn refused(env: &Env, args: &[&str]) -> String {
    let out = env.drydock(args).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        text(&out.stdout)
    );
    stderr
}

/// The read commands, none of which may change the database.
const READS: [&[&str]; 7] = [
    &["lease", "list"],
    &["lease", "show", "L1"],
    &["resource", "list"],
    &["blueprint", "list"],
    &["command", "list"],
    &["log"],
    &["exec", "--lease", "L1", "--", "true"],
];

/// Commands that write but set nothing up: run in the wrong directory, they must not make a
/// database of their own.
const WRITES: [&[&str]; 5] = [
    &["lease", "request", "--type", "host"],
    &["lease", "request", "--type", "host", "--wait"],
    &["lease", "release", "L1"],
    &["resource", "release", "R1"],
    &["blueprint", "grant", "host-pool", "local:/tmp/x"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_missing_database_names_the_path_and_creates_nothing() {
    let env = Env::new();
    let path = env.dir().join("drydock.db");
    for command in READS.iter().chain(&WRITES) {
        let stderr = refused(&env, command).await;
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("no Drydock database at {}", path.display())),
            "{command:?}: {stderr}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(env.dir()).unwrap().collect();
    assert!(left.is_empty(), "a command created {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_says_it_made_a_database_and_a_wait_with_no_daemon_says_none_serves_it() {
    let env = Env::new();
    let path = env.dir().join("drydock.db");
    let out = env
        .try_add_blueprint("host-pool", HOST_POOL_WASM, HOST_POOL_CONFIG, &[])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created = format!("created a new database at {}", path.display());
    assert!(
        text(&out.stderr).contains(&created),
        "{}",
        text(&out.stderr)
    );
    let again = env
        .try_add_blueprint("other", HOST_POOL_WASM, HOST_POOL_CONFIG, &[])
        .await;
    assert!(!text(&again.stderr).contains("created a new database"));

    // A type nothing makes is said so, naming those that are.
    let out = env.drydock(&["lease", "request", "--type", "hots"]).await;
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        out.status.success()
            && last.contains("no blueprint makes \"hots\" resources (the types made here: host)")
            && last.ends_with("a daemon breaks the lease, since nothing can serve it: add a blueprint of that type first"),
        "{stderr}"
    );
    // A config written over several lines shows on one.
    let config = HOST_POOL_CONFIG.replace(", ", ",\n  ") + "\n";
    env.add_blueprint("lines", HOST_POOL_WASM, &config, &[])
        .await;
    let shown = env.ok(&["blueprint", "show", "lines"]).await;
    let line = shown.lines().find(|l| l.starts_with("config:")).unwrap();
    assert!(
        line.contains(r#""name":"local-1""#) && !line.contains("\\n"),
        "{shown}"
    );

    let wait = [
        "lease",
        "request",
        "--type",
        "host",
        "--wait",
        "--timeout",
        "1s",
    ];
    let stderr = refused(&env, &wait).await;
    assert!(
        stderr.contains("no daemon is serving this database"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_another_process_holds_the_write_lock() {
    let env = Env::new();
    env.store().await;
    let lease = env.request_one("host", &[]).await;
    let writer = drydock_tests::sqlite(&env.url);
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let listed = env.ok(&["lease", "list"]).await;
    assert!(listed.contains(&lease.to_string()), "{listed}");
    env.ok(&["lease", "show", &lease.to_string()]).await;
    env.ok(&["log", "--object", &lease.to_string()]).await;
    writer.execute_batch("ROLLBACK").unwrap();
}

/// Sets up the database at `url` as the Drydock before migration `description` did (before
/// the newest, with `None`).
async fn migrate_before(url: &str, description: Option<&str>) {
    if url.starts_with("sqlite:") {
        let migrator = sqlx::migrate!("../host/migrations/sqlite");
        let version = version_before(&migrator, description);
        sqlx_ran_to(&drydock_tests::sqlite(url), &migrator, version);
    } else {
        let db = sqlx::PgPool::connect(url).await.unwrap();
        let migrator = sqlx::migrate!("../host/migrations/postgres");
        let version = version_before(&migrator, description);
        migrator.run_to(version, &db).await.unwrap();
    }
}

/// Applies `migrator`'s migrations up to `version` to a SQLite database and records them as
/// sqlx's runner did for the Drydocks that used it (`_sqlx_migrations`).
fn sqlx_ran_to(db: &rusqlite::Connection, migrator: &Migrator, version: i64) {
    db.execute_batch(
        "CREATE TABLE _sqlx_migrations (
             version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .unwrap();
    for migration in migrator.iter().filter(|m| m.version <= version) {
        db.execute_batch(migration.sql.as_str()).unwrap();
        db.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, TRUE, ?3, 0)",
            (
                migration.version,
                migration.description.as_ref(),
                migration.checksum.as_ref(),
            ),
        )
        .unwrap();
    }
}

/// The version of `migrator`'s migration before the one called `description` (before its
/// newest, with `None`).
fn version_before(migrator: &Migrator, description: Option<&str>) -> i64 {
    let mut versions: Vec<(i64, &str)> = migrator
        .iter()
        .map(|m| (m.version, m.description.as_ref()))
        .collect();
    versions.sort();
    let at = match description {
        Some(description) => versions
            .iter()
            .position(|(_, d)| *d == description)
            .unwrap_or_else(|| panic!("no migration {description:?}: {versions:?}")),
        None => versions.len() - 1,
    };
    versions[at - 1].0
}

/// A database an older Drydock set up: every command but `migrate` refuses it, naming
/// `drydock migrate`, and changes nothing; after `drydock migrate` they work.
async fn an_older_schema_waits_for_migrate(env: &Env) {
    migrate_before(&env.url, None).await;
    for command in READS
        .iter()
        .chain(&[&["lease", "request", "--type", "host"][..]])
    {
        let stderr = refused(env, command).await;
        assert!(
            stderr.contains("older than this drydock") && stderr.contains("`drydock migrate`"),
            "{command:?}: {stderr}"
        );
    }
    env.ok(&["migrate"]).await;
    let lease = env.request_one("host", &[]).await;
    assert_eq!(lease.to_string(), "L1", "the refused request wrote nothing");
    let listed = env.ok(&["lease", "list"]).await;
    assert!(listed.contains(&lease.to_string()), "{listed}");
    // Every read works through its read-only connections (`exec` needs an active lease).
    for read in READS.iter().filter(|read| read[0] != "exec") {
        env.ok(read).await;
    }
}

/// Runs `sql` on the database at `url`.
async fn execute(url: &str, sql: &'static str) {
    if url.starts_with("sqlite:") {
        drydock_tests::sqlite(url).execute_batch(sql).unwrap();
    } else {
        let db = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&db).await.unwrap();
    }
}

/// A database from before authorizations, whose working copies hold leases on host-pool's
/// hosts and whose `waiting` blueprint waits for one of type `host`: after `drydock migrate`
/// each is authorized for what it used (and nothing else), so nothing in use breaks.
async fn an_upgrade_authorizes_what_supporting_leases_imply(env: &Env) {
    migrate_before(&env.url, Some("authorizations")).await;
    execute(
        &env.url,
        r#"
        INSERT INTO component (digest, wasm, created_at) VALUES ('d', 'x', 0);
        INSERT INTO blueprint (name, component, component_name, resource_type, config, grants,
                               created_at)
        VALUES ('host-pool', 'd', 'h', 'host', '{}', '["local:/tmp/drydock"]', 0),
               ('other-pool', 'd', 'h', 'host', '{}', '[]', 0),
               ('working-copy', 'd', 'w', 'working-copy', '{}', '["ssh-key:/keys"]', 0),
               ('waiting', 'd', 'w', 'thing', '{}', '[]', 0),
               ('idle', 'd', 'w', 'other', '{}', '[]', 0);
        INSERT INTO resource (blueprint_id, resource_type, status, created_at, updated_at)
        VALUES (1, 'host', 'active', 0, 0), (3, 'working-copy', 'active', 0, 0),
               (4, 'thing', 'pending', 0, 0);
        INSERT INTO lease (resource_type, status, owner, resource_id, parent_resource_id,
                           created_at, updated_at)
        VALUES ('host', 'active', 'R2', 1, 2, 0, 0), ('host', 'pending', 'R3', NULL, 3, 0, 0);
        "#,
    )
    .await;
    env.ok(&["migrate"]).await;
    let grants = |name: &'static str| async move {
        let shown = env.ok(&["blueprint", "show", name, "--json"]).await;
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        shown["grants"].clone()
    };
    assert_eq!(
        grants("working-copy").await,
        serde_json::json!(["ssh-key:/keys", "use:host-pool"])
    );
    assert_eq!(
        grants("waiting").await,
        serde_json::json!(["use:host-pool", "use:other-pool"])
    );
    assert_eq!(
        grants("host-pool").await,
        serde_json::json!(["local:/tmp/drydock"])
    );
    assert_eq!(grants("idle").await, serde_json::json!([]));
}

/// A database from before fair share, with work items of resources, of a user's lease and of a
/// supporting lease, and a step: after `drydock migrate` each work item has its tenant (the
/// resource's blueprint, the owner, the requesting resource's blueprint) and the blueprint's
/// step history counts its step.
async fn an_upgrade_gives_every_work_item_its_tenant(env: &Env) {
    migrate_before(&env.url, Some("fair share")).await;
    execute(
        &env.url,
        r#"
        INSERT INTO component (digest, wasm, created_at) VALUES ('d', 'x', 0);
        INSERT INTO blueprint (name, component, component_name, resource_type, config, grants,
                               created_at)
        VALUES ('host-pool', 'd', 'h', 'host', '{}', '[]', 0),
               ('working-copy', 'd', 'w', 'working-copy', '{}', '["use:host-pool"]', 0);
        INSERT INTO resource (blueprint_id, resource_type, status, created_at, updated_at)
        VALUES (1, 'host', 'active', 0, 0), (2, 'working-copy', 'pending', 0, 0);
        INSERT INTO lease (resource_type, status, owner, resource_id, parent_resource_id,
                           created_at, updated_at)
        VALUES ('working-copy', 'acquired', 'cli:alice', 2, NULL, 0, 0),
               ('host', 'pending', 'R2', NULL, 2, 0, 0);
        INSERT INTO work_item (object, wake_at) VALUES ('R1', 0), ('R2', 0), ('L1', 0), ('L2', 0);
        INSERT INTO step (object, blueprint_id, hook, step, verdict, duration_us, created_at)
        VALUES ('R2', 2, 'allocate-resource', '{"actions":[]}', 'applied', 1, 0);
        "#,
    )
    .await;
    env.ok(&["migrate"]).await;
    let store = env.store().await;
    let claims = store
        .work_item_claim("w", 10, Duration::from_secs(30), &Load::default())
        .await
        .unwrap();
    let mut tenants: Vec<(String, String)> = claims
        .into_iter()
        .map(|c| (c.object.to_string(), c.tenant))
        .collect();
    tenants.sort();
    let expected = [
        ("L1", "owner:cli:alice"),
        ("L2", "B2"),
        ("R1", "B1"),
        ("R2", "B2"),
    ]
    .map(|(object, tenant)| (object.to_string(), tenant.to_string()));
    assert_eq!(tenants, expected);
    let copies = store.blueprint_by_name("working-copy").await.unwrap();
    assert_eq!(copies.step_bytes, 14, "the step's body, counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_upgrade_gives_every_work_item_its_tenant() {
    an_upgrade_gives_every_work_item_its_tenant(&Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_newer_than_the_sqlite_schema_names_the_command_that_upgrades_it() {
    let env = Env::new();
    an_older_schema_waits_for_migrate(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_upgrade_authorizes_what_supporting_leases_imply() {
    an_upgrade_authorizes_what_supporting_leases_imply(&Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_newer_than_the_postgres_schema_names_the_command_that_upgrades_it() {
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    let stderr = refused(&env, &["lease", "list"]).await;
    assert!(stderr.contains("no Drydock tables yet"), "{stderr}");
    an_older_schema_waits_for_migrate(&env).await;
    let upgraded = Env::with_url(cluster.database().await);
    an_upgrade_authorizes_what_supporting_leases_imply(&upgraded).await;
    let upgraded = Env::with_url(cluster.database().await);
    an_upgrade_gives_every_work_item_its_tenant(&upgraded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_server_that_refuses_is_named_with_the_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::with_url(format!("postgres://drydock@127.0.0.1:{port}/test"));
    for command in [
        &["lease", "list"][..],
        &["lease", "request", "--type", "host"],
    ] {
        let stderr = refused(&env, command).await;
        assert!(
            stderr.contains(&format!("cannot reach the database at 127.0.0.1:{port}"))
                && stderr.to_lowercase().contains("connection refused")
                && !stderr.contains("timed out"),
            "{command:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cut_short_ends_the_command_quietly() {
    let env = Env::new();
    env.store().await;
    // A reader that has gone already, as `| grep -q` or `| head -1` leave one.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut doctor = env.command(&["doctor"]);
    doctor.stdout(writer).stderr(Stdio::piped());
    let out = doctor.spawn().unwrap().wait_with_output().await.unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
    assert_eq!(
        signal,
        Some(rustix::process::Signal::PIPE.as_raw()),
        "{stderr}"
    );
}
