//! The README's walkthrough, run as written: the commands of its shell blocks, in order, against
//! a daemon with the example blueprints registered as `scripts/serve.sh` registers them, so the
//! walkthrough cannot drift from what Drydock does. Only what cannot be the same here is
//! replaced: `drydock` is this build's binary, the daemon's address is a free port rather than
//! 6080, and the Python blueprint is built for this test.

use drydock_tests::{Env, HOST_POOL_WASM, TOKEN, USE_HOST_POOL, WORKING_COPY_WASM};
use std::path::{Path, PathBuf};

/// The repository's root, where the walkthrough runs (it names `blueprints/…` and `target/…`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The shell blocks of the README's `## heading` section, each as its commands (continuation
/// lines joined, comments and the `alias` line left out).
fn shell_blocks(heading: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no {heading:?} section"));
    let section = &readme[start + heading.len() + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut commands: Vec<String> = Vec::new();
        let mut pending = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let line = match line.find("  #") {
                Some(comment) => &line[..comment],
                None => line,
            };
            let line = line.trim_end();
            match line.strip_suffix('\\') {
                Some(head) => pending.push_str(head),
                None => {
                    pending.push_str(line);
                    let command = std::mem::take(&mut pending);
                    let command = command.trim();
                    if !command.is_empty() && !command.starts_with("alias ") {
                        commands.push(command.to_string());
                    }
                }
            }
        }
        blocks.push(commands);
    }
    blocks
}

/// Runs `commands` in one `bash` (each shown as it runs) with `drydock` as this build's
/// binary and `replace`'s substitutions made; fails the test with the transcript unless all
/// succeed. The transcript.
async fn run(env: &Env, commands: &[String], replace: &[(&str, &str)]) -> String {
    let mut script = String::from(
        "set -euo pipefail\ndrydock() { \"$DRYDOCK_BINARY\" \"$@\"; }\nPS4='$ '\nset -x\n",
    );
    for command in commands {
        let mut command = command.clone();
        for (from, to) in replace {
            command = command.replace(from, to);
        }
        script.push_str(&command);
        script.push('\n');
    }
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(workspace())
        .env("DRYDOCK_BINARY", drydock_tests::drydock_binary().unwrap())
        .env("DRYDOCK_DATABASE_URL", &env.url)
        .env("DRYDOCK_TOKEN", TOKEN)
        .env("XDG_CACHE_HOME", drydock_tests::component_cache())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{transcript}"
    );
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let env = Env::new();
    let examples = workspace().join("blueprints");
    let example =
        |name: &str| std::fs::read_to_string(examples.join(name).join("example.json")).unwrap();
    let scratch = env.dir().join("scratch-py.wasm");
    drydock_tests::componentize("scratch-py", &scratch);
    let scratch = scratch.to_str().unwrap();
    // As scripts/serve.sh registers them, and what their grants name.
    std::fs::create_dir_all("/tmp/drydock-scratch").unwrap();
    let pool_grant = "local:/tmp/drydock,ro=/tmp/demo.git";
    env.add_blueprint(
        "host-pool",
        HOST_POOL_WASM,
        &example("host-pool"),
        &[pool_grant],
    )
    .await;
    env.add_blueprint(
        "working-copy",
        WORKING_COPY_WASM,
        &example("working-copy"),
        &[USE_HOST_POOL],
    )
    .await;
    env.add_blueprint(
        "scratch-py",
        scratch,
        &example("scratch-py"),
        &["local:/tmp/drydock-scratch"],
    )
    .await;
    // A demo repository left by an earlier run is made again, as on a fresh machine.
    let _ = std::fs::remove_dir_all("/tmp/demo.git");
    let mut daemon = env.serve(&[]);
    let address = daemon.url().await.trim_start_matches("http://").to_string();

    let blocks = shell_blocks("## Walkthrough");
    assert!(blocks.len() >= 2, "the walkthrough and the API: {blocks:?}");
    let transcript = run(
        &env,
        &blocks[0],
        &[("target/guests/scratch-py.wasm", scratch)],
    )
    .await;
    for shown in ["L1", "hello", "activated", "released"] {
        assert!(transcript.contains(shown), "{shown}:\n{transcript}");
    }
    // The API's examples, with the token serve.sh prints already exported; curl fails on an
    // error status here, so a refused request fails the walkthrough.
    let api: Vec<String> = (blocks.iter().skip(1))
        .flatten()
        .filter(|c| c.contains("curl"))
        .cloned()
        .collect();
    assert!(!api.is_empty(), "{blocks:?}");
    let replace = [
        ("localhost:6080", address.as_str()),
        ("curl -s ", "curl -sf "),
    ];
    run(&env, &api, &replace).await;
}
