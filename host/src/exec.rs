//! Running the commands that blueprints ask for (`exec` actions) through a command interface.
//!
//! Runs happen outside any transaction; their results are recorded under the fence afterwards.
//! They are at-least-once across crashes, so blueprints must make them idempotent.

use crate::domain::{CommandInterface, ExecRequest, ExecResult};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Bytes kept of each of stdout and stderr.
pub const OUTPUT_LIMIT: usize = 64 << 10;

/// Runs `request` through `interface` and describes what happened; never fails.
pub async fn run(interface: &CommandInterface, request: &ExecRequest) -> ExecResult {
    let mut command = match command(interface, &request.argv, request.cwd.as_deref()) {
        Ok(command) => command,
        Err(reason) => return failed(request, reason),
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let limit = Duration::from_millis(u64::from(request.timeout_ms));
    match tokio::time::timeout(limit, command.output()).await {
        Err(_) => failed(request, format!("timed out after {limit:?}")),
        Ok(Err(error)) => failed(
            request,
            format!("could not run {:?}: {error}", request.argv[0]),
        ),
        Ok(Ok(output)) => ExecResult {
            id: request.id.clone(),
            exit_code: output.status.code(),
            stdout: truncated(&output.stdout),
            stderr: truncated(&output.stderr),
        },
    }
}

/// The process that runs `argv` (in `cwd`, relative to the interface's root) through
/// `interface`: directly for `local`, through `ssh` for `ssh`. Stdio is left to the caller.
pub fn command(
    interface: &CommandInterface,
    argv: &[String],
    cwd: Option<&str>,
) -> Result<Command, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    match interface {
        CommandInterface::Local { root } => {
            let dir = match cwd {
                Some(cwd) => Path::new(root).join(cwd),
                None => Path::new(root).to_path_buf(),
            };
            std::fs::create_dir_all(root).map_err(|e| format!("creating {root}: {e}"))?;
            let mut command = Command::new(program);
            command.args(args).current_dir(dir);
            Ok(command)
        }
        CommandInterface::Ssh {
            host,
            port,
            user,
            key_path,
        } => {
            let mut remote = String::new();
            if let Some(cwd) = cwd {
                remote.push_str(&format!("cd {} && ", shell_quote(cwd)));
            }
            let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
            remote.push_str(&quoted.join(" "));
            let mut command = Command::new("ssh");
            command
                .args([
                    "-o",
                    "BatchMode=yes",
                    "-i",
                    key_path,
                    "-p",
                    &port.to_string(),
                ])
                .arg(format!("{user}@{host}"))
                .arg("--")
                .arg(remote);
            Ok(command)
        }
    }
}

/// Quotes one word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn truncated(bytes: &[u8]) -> String {
    let end = bytes.len().min(OUTPUT_LIMIT);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn failed(request: &ExecRequest, reason: String) -> ExecResult {
    ExecResult {
        id: request.id.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            id: "x".into(),
            lease_key: "host".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            timeout_ms: 5_000,
        }
    }

    #[tokio::test]
    async fn local_commands_run_in_the_root() {
        let root = tempfile::tempdir().unwrap();
        let interface = CommandInterface::Local {
            root: root.path().to_string_lossy().into_owned(),
        };
        let result = run(&interface, &request(&["pwd"])).await;
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.stdout.trim(), root.path().to_string_lossy());

        let result = run(&interface, &request(&["sh", "-c", "echo oops >&2; exit 3"])).await;
        assert_eq!((result.exit_code, result.stderr.trim()), (Some(3), "oops"));

        let missing = run(&interface, &request(&["/no/such/program"])).await;
        assert_eq!(missing.exit_code, None);
        assert!(
            missing.stderr.contains("could not run"),
            "{}",
            missing.stderr
        );
    }

    #[tokio::test]
    async fn slow_commands_time_out() {
        let interface = CommandInterface::Local {
            root: "/tmp".into(),
        };
        let mut slow = request(&["sleep", "10"]);
        slow.timeout_ms = 100;
        let result = run(&interface, &slow).await;
        assert_eq!(result.exit_code, None);
        assert!(result.stderr.contains("timed out"));
    }

    #[test]
    fn ssh_commands_run_in_batch_mode_with_the_key_and_a_quoted_remote_line() {
        let interface = CommandInterface::Ssh {
            host: "build.example".into(),
            port: 2222,
            user: "ci".into(),
            key_path: "/etc/drydock/id".into(),
        };
        let argv = ["git", "clone", "it's here"].map(String::from);
        let command = command(&interface, &argv, Some("work dir")).unwrap();
        let command = command.as_std();
        assert_eq!(command.get_program(), "ssh");
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-o",
                "BatchMode=yes",
                "-i",
                "/etc/drydock/id",
                "-p",
                "2222",
                "ci@build.example",
                "--",
                r"cd 'work dir' && 'git' 'clone' 'it'\''s here'",
            ]
        );
    }

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
