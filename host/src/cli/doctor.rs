//! `drydock doctor`: checks what the daemon needs, one line each (`OK`, `WARN` or `FAIL`), and
//! exits non-zero when something fails: the database (opened read-only), the paths the
//! blueprints' grants name, the confinement of local execs (bubblewrap, the caps), `ssh`.

use super::Global;
use crate::exec::Confinement;
use crate::grant::Grant;
use crate::store::{Access, Blueprint};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `drydock doctor`.
#[derive(Debug, Args)]
pub(super) struct DoctorArgs {
    /// bubblewrap, as `drydock serve --bwrap` would use it.
    #[arg(long, env = crate::exec::confine::BWRAP_VAR, value_name = "PATH")]
    bwrap: Option<PathBuf>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// The lines printed so far, and whether one failed.
#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, verdict: Verdict, check: &str, text: &str) {
        let tag = match verdict {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        self.failed |= verdict == Verdict::Fail;
        println!("{tag:<5} {check}: {}", crate::text::escape(text));
    }
}

/// Runs every check; fails (exit 1) when one fails.
pub(super) async fn run(global: &Global, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let blueprints = match global.store(Access::Read).await {
        Ok(store) => match store.blueprint_list().await {
            Ok(blueprints) => {
                let count = match blueprints.len() {
                    1 => "1 blueprint".to_string(),
                    n => format!("{n} blueprints"),
                };
                let text = format!("{} opened read-only; {count}", global.database());
                report.line(Verdict::Ok, "store", &text);
                Some(blueprints)
            }
            Err(error) => {
                report.line(
                    Verdict::Fail,
                    "store",
                    &format!("reading blueprints: {error}"),
                );
                None
            }
        },
        Err(error) => {
            report.line(Verdict::Fail, "store", &format!("{error:#}"));
            None
        }
    };
    match &blueprints {
        Some(blueprints) => grants(&mut report, blueprints),
        None => report.line(
            Verdict::Fail,
            "grants",
            "not checked: the store cannot be read",
        ),
    }
    confinement(&mut report, global, args.bwrap.as_deref());
    let wants_ssh = blueprints
        .iter()
        .flatten()
        .any(|b| (b.grants.iter()).any(|g| matches!(g, Grant::Ssh { .. } | Grant::SshKey { .. })));
    ssh(&mut report, wants_ssh);
    Ok(match report.failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

/// The paths each blueprint's grants name: a local directory or a read-only path that does not
/// exist is a warning (an exec makes the directory; a missing read-only path is left out of the
/// sandbox), a missing key directory a failure (its SSH execs cannot work); an authorization
/// naming no blueprint a warning; so is a grant that lets execs reach further than usual
/// (`Grant::warning`: the machine's network).
fn grants(report: &mut Report, blueprints: &[Blueprint]) {
    if blueprints.is_empty() {
        report.line(Verdict::Ok, "grants", "no blueprints yet");
    }
    for blueprint in blueprints {
        let check = format!("grants of {}", blueprint.name);
        if blueprint.grants.is_empty() {
            report.line(Verdict::Ok, &check, "none");
        }
        for grant in &blueprint.grants {
            let (missing, verdict) = match grant {
                Grant::Local { dir, options } => {
                    let missing: Vec<&str> = std::iter::once(dir)
                        .chain(&options.read_only)
                        .map(String::as_str)
                        .filter(|p| !Path::new(p).exists())
                        .collect();
                    (missing, Verdict::Warn)
                }
                Grant::SshKey { dir } if !Path::new(dir).is_dir() => {
                    (vec![dir.as_str()], Verdict::Fail)
                }
                Grant::Use { blueprint: name } if !blueprints.iter().any(|b| b.name == *name) => {
                    (vec![name.as_str()], Verdict::Warn)
                }
                Grant::SshKey { .. } | Grant::Ssh { .. } | Grant::Use { .. } => {
                    (vec![], Verdict::Ok)
                }
            };
            match (missing.as_slice(), grant.warning()) {
                ([], Some(warning)) => report.line(Verdict::Warn, &check, &warning),
                ([], None) => report.line(Verdict::Ok, &check, &grant.to_string()),
                (paths, _) => report.line(
                    verdict,
                    &check,
                    &format!("{grant}: {} does not exist", paths.join(", ")),
                ),
            }
        }
    }
}

/// Whether local execs can be confined here, and capped.
fn confinement(report: &mut Report, global: &Global, bwrap: Option<&Path>) {
    let hidden = super::confine::daemon_files(global.database(), None);
    match Confinement::detect(bwrap, hidden, false) {
        Confinement::Sandboxed(sandbox) => {
            report.line(Verdict::Ok, "confinement", &sandbox.describe());
            match sandbox.caps_missing() {
                None => report.line(Verdict::Ok, "caps", "a cgroup per exec"),
                Some(why) => report.line(Verdict::Warn, "caps", why),
            }
            match sandbox.outbound_missing() {
                None => report.line(
                    Verdict::Ok,
                    "net=outbound",
                    "slirp4netns gives execs of net=outbound grants the outside",
                ),
                Some(why) => report.line(Verdict::Warn, "net=outbound", why),
            }
        }
        refused => {
            let text = format!(
                "{}; the daemon refuses local execs unless started with --unconfined-exec",
                refused.describe()
            );
            report.line(Verdict::Fail, "confinement", &text);
        }
    }
}

/// The `ssh` SSH execs run (missing: a failure if a blueprint is granted SSH targets or keys),
/// and the configuration `DRYDOCK_SSH_CONFIG` names.
fn ssh(report: &mut Report, wanted: bool) {
    let found = crate::exec::EXEC_PATH
        .split(':')
        .map(|dir| Path::new(dir).join("ssh"))
        .find(|path| path.is_file());
    match found {
        Some(path) => {
            let version = std::process::Command::new(&path).arg("-V").output();
            let version = version
                .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_string())
                .unwrap_or_default();
            report.line(Verdict::Ok, "ssh", &format!("{} {version}", path.display()));
        }
        None => {
            let verdict = if wanted { Verdict::Fail } else { Verdict::Warn };
            let text = format!(
                "not found in {}; SSH execs cannot run",
                crate::exec::EXEC_PATH
            );
            report.line(verdict, "ssh", &text);
        }
    }
    if let Some(config) = std::env::var_os(crate::exec::SSH_CONFIG_VAR) {
        let config = PathBuf::from(config);
        match config.is_file() {
            true => report.line(Verdict::Ok, "ssh config", &config.display().to_string()),
            false => report.line(
                Verdict::Fail,
                "ssh config",
                &format!("{} (DRYDOCK_SSH_CONFIG) does not exist", config.display()),
            ),
        }
    }
}
