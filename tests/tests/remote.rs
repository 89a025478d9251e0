//! The CLI through a daemon's API (`--server`): a client with a token and no access to the
//! database requests a working copy and waits for it, streams commands run on it, stops one
//! with Ctrl-C, and releases it; other tokens are refused what their roles do not allow. On
//! SQLite with one daemon, and on PostgreSQL with two (the client's calls alternate).

use drydock_tests::git::repository;
use drydock_tests::postgres::Cluster;
use drydock_tests::{Env, TOKEN, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `drydock` on a machine that reaches Drydock only through `server`, with `token` if any: the
/// database URL it is given leads nowhere.
fn client(server: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(drydock_tests::drydock_binary().unwrap());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DRYDOCK_DATABASE_URL", "sqlite:///nonexistent/drydock.db")
        .env("DRYDOCK_SERVER", server)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("DRYDOCK_TOKEN", token);
    }
    command
}

/// Runs the client to its end.
async fn run(server: &str, token: Option<&str>, args: &[&str]) -> Output {
    client(server, token, args).output().await.unwrap()
}

/// Runs the client and fails the test unless it succeeds; its stdout.
async fn ok(server: &str, token: &str, args: &[&str]) -> String {
    let out = run(server, Some(token), args).await;
    assert!(
        out.status.success(),
        "drydock {args:?} through {server} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the client, which must fail saying `why`.
async fn refused(server: &str, token: Option<&str>, args: &[&str], why: &[&str]) {
    let out = run(server, token, args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "drydock {args:?} succeeded: {stderr}"
    );
    for words in why {
        assert!(stderr.contains(words), "drydock {args:?}: {stderr}");
    }
}

/// `drydock token create NAME --role ROLE`, on the database; the secret.
async fn token(env: &Env, name: &str, role: &str) -> String {
    let made = env
        .ok(&["token", "create", name, "--role", role, "--json"])
        .await;
    let made: Value = serde_json::from_str(&made).unwrap();
    made["secret"].as_str().unwrap().to_string()
}

/// Starts `drydock exec` through `server`, its stdout piped.
fn start_exec(server: &str, token: &str, lease: &str, script: &str) -> Child {
    let args = ["exec", "--lease", lease, "--", "sh", "-c", script];
    client(server, Some(token), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The next line a running client prints.
async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(drydock_tests::PATIENCE, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a line before the end")
}

/// Whether nobody holds the lock on `file` (`flock -n`).
fn unlocked(file: &Path) -> bool {
    std::process::Command::new("flock")
        .args(["-n", file.to_str().unwrap(), "true"])
        .status()
        .unwrap()
        .success()
}

/// The client's whole life with a working copy, its calls going to `servers` in turn.
async fn a_client_works_through_the_api(env: &Env, servers: &[String], origin: &Path) {
    let ci = token(env, "ci", "requester").await;
    let other = token(env, "other-team", "requester").await;
    let viewer = token(env, "dashboard", "viewer").await;
    let server = |n: usize| servers[n % servers.len()].as_str();

    // Nothing without a token, and the client says what is missing.
    refused(
        server(0),
        None,
        &["lease", "list"],
        &["401", "no token was sent: set DRYDOCK_TOKEN"],
    )
    .await;
    // Commands that need the database say so rather than open a database here.
    refused(
        server(0),
        Some(&ci),
        &["gc"],
        &["works on the database itself"],
    )
    .await;

    // A working copy, waited for with its progress.
    let repo = format!("repository={}", origin.display());
    let out = run(
        server(0),
        Some(&ci),
        &[
            "lease",
            "request",
            "--type",
            "working-copy",
            "--attr",
            &repo,
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let lease = stdout.trim().to_string();
    assert!(stderr.contains(&format!("{lease} lease.")), "{stderr}");
    let shown = ok(server(1), &ci, &["lease", "show", &lease, "--json"]).await;
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "active", "{shown}");
    assert_eq!(shown["owner"], "ci", "{shown}");

    // A command's output and exit code come back.
    let log = ok(
        server(1),
        &ci,
        &[
            "exec",
            "--lease",
            &lease,
            "--",
            "git",
            "log",
            "-1",
            "--format=%s",
        ],
    )
    .await;
    assert_eq!(log.trim(), "two");
    let failed = run(
        server(0),
        Some(&ci),
        &[
            "exec",
            "--lease",
            &lease,
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 3",
        ],
    )
    .await;
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&failed.stderr).trim(), "oops");

    // Lines arrive while the command runs: it waits for a file the test makes only after
    // reading its first line.
    let mut running = start_exec(
        server(1),
        &ci,
        &lease,
        "pwd; while [ ! -e go ]; do sleep 0.02; done; echo second",
    );
    let mut lines = BufReader::new(running.stdout.take().unwrap()).lines();
    let root = PathBuf::from(next_line(&mut lines).await);
    assert!(running.try_wait().unwrap().is_none(), "it ended early");
    std::fs::write(root.join("go"), "").unwrap();
    assert_eq!(next_line(&mut lines).await, "second");
    assert!(running.wait().await.unwrap().success());

    // Ctrl-C in the client ends the command on the host: the lock it holds is let go.
    let lock = root.join("held.lock");
    let script = "exec flock held.lock sh -c 'echo holding; exec sleep 600'";
    let mut held = start_exec(server(0), &ci, &lease, script);
    let mut lines = BufReader::new(held.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await, "holding");
    assert!(!unlocked(&lock), "the command holds the lock");
    let interrupted = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &held.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(held.wait().await.unwrap().code(), Some(130));
    wait_for("the interrupted command to end on the host", || async {
        unlocked(&lock).then_some(())
    })
    .await;
    let took = interrupted.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "it ended {took:?} after Ctrl-C"
    );

    // Others may look (a viewer) but not release or run commands on it.
    let listed = ok(server(1), &viewer, &["lease", "list"]).await;
    assert!(listed.contains(&lease), "{listed}");
    refused(
        server(0),
        Some(&viewer),
        &["lease", "release", &lease],
        &[
            "403",
            "the token \"dashboard\" is a viewer",
            "nothing was queued",
        ],
    )
    .await;
    refused(
        server(1),
        Some(&other),
        &["lease", "release", &lease],
        &["403", "other-team"],
    )
    .await;
    refused(
        server(0),
        Some(&other),
        &["exec", "--lease", &lease, "--", "true"],
        &["403", "other-team"],
    )
    .await;

    // A command still running when its lease is released is stopped, saying why.
    let mut long = start_exec(server(1), &ci, &lease, "echo running; exec sleep 600");
    let mut lines = BufReader::new(long.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await, "running");
    let released = ok(server(0), &ci, &["lease", "release", &lease]).await;
    assert!(
        released.contains(&format!("{lease}: release queued")),
        "{released}"
    );
    let out = long.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("stopped: {lease} is")), "{stderr}");

    // Once it is gone, the lists read the same through the server as on the database.
    wait_for("the lease to be destroyed", || async {
        let shown = ok(server(0), &ci, &["lease", "show", &lease, "--json"]).await;
        shown.contains("\"destroyed\"").then_some(())
    })
    .await;
    wait_for("the working copy's resources to settle", || async {
        let pending = env.ok(&["command", "list", "--pending", "--json"]).await;
        (pending.trim() == "[]").then_some(())
    })
    .await;
    for list in [
        &["lease", "list", "--json"][..],
        &["resource", "list"][..],
        &["blueprint", "list"][..],
        &["log", "--object", &lease][..],
        &["command", "list", "--target", &lease][..],
    ] {
        // Read again while a worker still settles something between the two reads.
        wait_for(&format!("{list:?} to read the same both ways"), || async {
            let direct = env.ok(list).await;
            let through = ok(server(1), TOKEN, list).await;
            (through == direct).then_some(())
        })
        .await;
    }
}

/// A repository and hosts for working copies, registered on `env`.
async fn working_copies(env: &Env, world: &Path) -> PathBuf {
    let (origin, hosts) = (world.join("origin"), world.join("hosts"));
    std::fs::create_dir_all(&hosts).unwrap();
    repository(&origin);
    env.add_working_copies(&hosts, &[&origin]).await;
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_token_works_through_one_daemon_on_sqlite() {
    let world = tempfile::tempdir().unwrap();
    let env = Env::new();
    let origin = working_copies(&env, world.path()).await;
    let mut daemon = env.serve(&[]);
    let servers = [daemon.url().await];
    a_client_works_through_the_api(&env, &servers, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_token_works_through_two_daemons_on_postgres() {
    let cluster = Cluster::start();
    let world = tempfile::tempdir().unwrap();
    let env = Env::with_url(cluster.database().await);
    env.ok(&["migrate"]).await;
    let origin = working_copies(&env, world.path()).await;
    let mut first = env.serve(&[]);
    let mut second = env.serve(&[]);
    let servers = [first.url().await, second.url().await];
    a_client_works_through_the_api(&env, &servers, &origin).await;
}

/// `drydock ARGS…` as a user whose home is `home`, with `vars`: no server, token or database
/// but what they name.
async fn at_home(home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(drydock_tests::drydock_binary().unwrap())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(vars.iter().copied())
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_context_that_later_commands_use() {
    let env = Env::new();
    env.ok(&["migrate"]).await;
    let ci = token(&env, "ci", "requester").await;
    let mut daemon = env.serve(&["--workers", "0"]);
    let server = daemon.url().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let text = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // A token the server refuses is kept nowhere.
    let out = at_home(
        home,
        &[("DRYDOCK_TOKEN", "ddt_wrong")],
        &["login", "--server", &server],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    let config = home.join(".config/drydock/config.toml");
    assert!(!config.exists());

    // A good one, typed on standard input, becomes the current context.
    let mut login = Command::new(drydock_tests::drydock_binary().unwrap());
    login
        .args(["login", "--server", &server, "--name", "staging"])
        .env_clear()
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{ci}\n").as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("as ci (requester); the context \"staging\" is the current one"),
        "{}",
        text(&out)
    );
    let token_file = home.join(".config/drydock/tokens/staging");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), ci);
    assert_eq!((mode(&config), mode(&token_file)), (0o600, 0o600));
    assert_eq!(mode(&home.join(".config/drydock")), 0o700);
    assert!(!std::fs::read_to_string(&config).unwrap().contains(&ci));

    // Later commands go to the context's server with its token, owned by the token's name.
    let out = at_home(home, &[], &["lease", "request", "--type", "host"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let lease = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let shown = at_home(home, &[], &["lease", "show", &lease, "--json"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["owner"], "ci", "{shown}");
    let listed = at_home(home, &[], &["context", "list"]).await;
    assert!(text(&listed).contains(&server), "{}", text(&listed));
    // A database named on the command line wins over the current context.
    let nowhere = "sqlite:///nonexistent/drydock.db";
    let out = at_home(home, &[], &["--database", nowhere, "lease", "list"]).await;
    assert!(
        text(&out).contains("no Drydock database at"),
        "{}",
        text(&out)
    );
    // A DRYDOCK_TOKEN meant for another server is not sent to the context's.
    let out = at_home(
        home,
        &[("DRYDOCK_TOKEN", "ddt_elsewhere")],
        &["lease", "list"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    // An unknown context is named, with those there are.
    let out = at_home(home, &[], &["--context", "prod", "lease", "list"]).await;
    assert!(
        text(&out).contains("there is no context named \"prod\" (the contexts: staging)"),
        "{}",
        text(&out)
    );
    let out = at_home(home, &[], &["context", "use", "prod"]).await;
    assert!(!out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_unconfined_daemon_only_an_operator_runs_commands_through_the_api() {
    let world = tempfile::tempdir().unwrap();
    let env = Env::new();
    env.add_host_pool_at(world.path(), &[]).await;
    let ci = token(&env, "ci", "requester").await;
    let mut daemon = env.serve(&["--unconfined-exec"]);
    let server = daemon.url().await;
    let args = [
        "lease",
        "request",
        "--type",
        "host",
        "--wait",
        "--timeout",
        "90s",
    ];
    let lease = ok(&server, &ci, &args).await.trim().to_string();
    refused(
        &server,
        Some(&ci),
        &["exec", "--lease", &lease, "--", "id"],
        &["403", "needs the operator role", "--unconfined-exec"],
    )
    .await;
    let out = ok(
        &server,
        TOKEN,
        &["exec", "--lease", &lease, "--", "echo", "operator"],
    )
    .await;
    assert_eq!(out, "operator\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_or_not_a_url_is_named() {
    refused(
        "http://127.0.0.1:9",
        Some("x"),
        &["lease", "list"],
        &["cannot reach the server at http://127.0.0.1:9"],
    )
    .await;
    refused(
        "ftp://example.com",
        Some("x"),
        &["lease", "list"],
        &["is not an http:// or https:// URL"],
    )
    .await;
}

/// Starts a command on `lease` through the API as `token`, answered but not read.
async fn start_unread(server: &str, token: &str, lease: &str, script: &str) -> reqwest::Response {
    let answer = reqwest::Client::new()
        .post(format!("{server}/api/v1/leases/{lease}/exec"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "argv": ["sh", "-c", script] }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK, "exec on {lease}");
    answer
}

/// The end frame of a command's stream, read to its end.
async fn ending(answer: reqwest::Response) -> drydock_host::exec_stream::Ending {
    use drydock_host::exec_stream::{Decoder, Frame};
    let mut decoder = Decoder::default();
    decoder.push(&answer.bytes().await.unwrap());
    while let Some(frame) = decoder.next_frame().unwrap() {
        if let Frame::End(ending) = frame {
            return ending;
        }
    }
    panic!("the stream ended with no end frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_execs_are_limited_per_token_and_daemon_and_stop_with_their_lease_even_unread() {
    let world = tempfile::tempdir().unwrap();
    let env = Env::new();
    env.add_host_pool_at(world.path(), &[]).await;
    let (ci, other, third) = (
        token(&env, "ci", "requester").await,
        token(&env, "other", "requester").await,
        token(&env, "third", "requester").await,
    );
    let mut daemon = env.serve(&["--max-api-execs", "2", "--max-api-execs-per-token", "1"]);
    let server = daemon.url().await;
    let request = ["lease", "request", "--type", "host", "--wait"];
    let lease = |token: String| {
        let server = server.clone();
        async move { ok(&server, &token, &request).await.trim().to_string() }
    };
    let (first, second) = (lease(ci.clone()).await, lease(ci.clone()).await);
    let (others, thirds) = (lease(other.clone()).await, lease(third.clone()).await);

    // The flags that shape a local exec's sandbox mean nothing on a server: refused, not ignored.
    for flag in [&["--unconfined-exec"][..], &["--hide", "/srv"]] {
        let mut args = vec!["exec", "--lease", &first];
        args.extend_from_slice(flag);
        args.extend(["--", "true"]);
        refused(
            &server,
            Some(&ci),
            &args,
            &[&format!("{} shapes commands run on this machine", flag[0])],
        )
        .await;
    }

    // A command that writes without end, to a client that never reads it.
    let unread = start_unread(&server, &ci, &first, "exec yes").await;
    let exec = |lease| ["exec", "--lease", lease, "--", "echo", "ran"];
    refused(
        &server,
        Some(&ci),
        &exec(&second),
        &["429", "\"ci\" runs 1 commands", "--max-api-execs-per-token"],
    )
    .await;
    let _held = start_unread(&server, &other, &others, "exec sleep 600").await;
    refused(
        &server,
        Some(&third),
        &exec(&thirds),
        &["429", "this daemon runs 2 commands", "--max-api-execs)"],
    )
    .await;

    // Its lease released, the unread command is stopped all the same, and its slot is free.
    ok(&server, &ci, &["lease", "release", &first]).await;
    let ran = wait_for("the stopped command's slot to be free", || async {
        let out = run(&server, Some(&ci), &exec(&second)).await;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    })
    .await;
    assert_eq!(ran, "ran\n");
    let ended = ending(unread).await;
    assert_eq!(ended.exit_code, None, "{ended:?}");
    let why = ended.error.unwrap_or_default();
    assert!(why.contains(&format!("stopped: {first} is")), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_login_interrupted_gives_the_terminal_its_echo_back() {
    use rustix::pty::OpenptFlags;
    use rustix::termios::{LocalModes, tcgetattr};
    use std::io::Read as _;
    let home = tempfile::tempdir().unwrap();
    // The user's terminal: a pseudo-terminal whose other side the test holds.
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let terminal = rustix::pty::ioctl_tiocgptpeer(&master, flags).unwrap();
    let echoes = || {
        tcgetattr(&terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    };
    assert!(echoes());
    let mut command = std::process::Command::new(drydock_tests::drydock_binary().unwrap());
    command
        .args(["login", "--server", "http://127.0.0.1:9"])
        .env_clear()
        .env("HOME", home.path())
        .stdin(std::fs::File::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: `setsid` and `ioctl` are async-signal-safe; stdin is the terminal by then.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::os::fd::BorrowedFd::borrow_raw(0))?;
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut said = Vec::new();
    while !said.ends_with(b"token: ") {
        let mut byte = [0u8];
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "no prompt: {said:?}");
        said.push(byte[0]);
    }
    assert!(!echoes(), "the token is typed unseen");
    // Ctrl-C, typed at the terminal.
    rustix::io::write(&master, b"\x03").unwrap();
    let status = child.wait().unwrap();
    stderr.read_to_end(&mut said).unwrap();
    let said = String::from_utf8_lossy(&said);
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("interrupted: no token kept"), "{said}");
    assert!(echoes(), "the terminal echoes again");
    assert!(!home.path().join(".config/drydock/config.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_nothing_makes_is_warned_about_through_the_api() {
    let world = tempfile::tempdir().unwrap();
    let env = Env::new();
    env.add_host_pool_at(world.path(), &[]).await;
    let mut daemon = env.serve(&["--workers", "0"]);
    let server = daemon.url().await;
    let said = "no blueprint makes \"hots\" resources (the types made here: host)";

    // The API answers with the leases and a Warning header (as Kubernetes' API does)…
    let answer = reqwest::Client::new()
        .post(format!("{server}/api/v1/leases"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "type": "hots" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
    let warning = answer.headers()["warning"].to_str().unwrap().to_string();
    assert!(warning.starts_with("299 - \""), "{warning}");
    assert!(
        warning.contains("no blueprint makes \\\"hots\\\""),
        "{warning}"
    );
    let leases: Value = answer.json().await.unwrap();
    assert_eq!(leases[0]["resource_type"], "hots", "{leases}");

    // …which the CLI through the server prints as it does on the database, last.
    let out = run(
        &server,
        Some(TOKEN),
        &["lease", "request", "--type", "hots"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("warning: ") && last.contains(said),
        "{stderr}"
    );
    let out = run(
        &server,
        Some(TOKEN),
        &["lease", "request", "--type", "host"],
    )
    .await;
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
