//! Drydock's own use case: git working copies on build hosts.
//!
//! A working-copy resource leases a `host`, clones the repository a lease names into a
//! directory of its own there, and is then reused by later leases of the same repository. Each
//! lease gets the copy to itself (a slot lock per copy; a second lease at the same time gets
//! another copy), checked out at the `ref` it asks for (a branch, a tag or a commit; the
//! remote's default branch if none), fetched first so a cached copy is never behind, and
//! cleaned when the lease ends, so the next one starts from a clean tree. Destroying the
//! resource removes the directory.
//!
//! Lease attributes: `repository` (a URL or path git can clone; required) and `ref`. After
//! activation the lease's `commit` attribute says what was checked out.
//!
//! Every command runs through the host lease's interface and is written to be run twice: the
//! host runs an exec at least once.

mod script;

use drydock_sdk::{
    Action, AllocationVerdict, Attributes, Blueprint, Call, CommandInterface, ExecRequest,
    LeaseStatus, LocalInterface, SshInterface, Step, export_blueprint,
};
use serde::Deserialize;
use std::time::Duration;

/// The working-copy blueprint.
pub struct WorkingCopy;

/// Where copies go on each host, and how long git may take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The directory, relative to the host's root, that holds the copies.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// The time limit of one git command, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
}

fn default_directory() -> String {
    "working-copies".into()
}

fn default_timeout_ms() -> u32 {
    300_000
}

/// The supporting lease's key.
const HOST: &str = "host";
/// Lease attribute: what to clone.
pub const REPOSITORY: &str = "repository";
/// Lease attribute: what to check out.
pub const REF: &str = "ref";
/// Lease attribute, set on activation: the commit checked out.
pub const COMMIT: &str = "commit";
/// Resource attribute: the copy's directory, relative to the host's root.
pub const PATH: &str = "path";

/// The slot lock that gives one lease a copy to itself.
fn copy_lock(resource: &str) -> String {
    format!("working-copy.copy({resource})")
}

impl Config {
    fn validate(&self) -> Result<(), String> {
        let dir = &self.directory;
        if dir.is_empty() || dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            return Err(format!(
                "`directory` must be a relative path inside the host's root, not {dir:?}"
            ));
        }
        if self.timeout_ms == 0 {
            return Err("`timeout_ms` must be positive".into());
        }
        Ok(())
    }
}

impl WorkingCopy {
    /// An exec through the host lease.
    fn git(call: &Call<Config>, id: &str, script: &str, args: &[&str]) -> Action {
        let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
        argv.extend(args.iter().map(|a| a.to_string()));
        Action::Exec(ExecRequest {
            id: id.into(),
            lease_key: HOST.into(),
            argv,
            cwd: None,
            timeout_ms: call.config().timeout_ms,
        })
    }

    fn path(call: &Call<Config>) -> Result<&str, String> {
        call.resource()
            .attribute(PATH)
            .ok_or_else(|| "the working copy has no `path` attribute".into())
    }
}

/// Why an exec failed, in one line: its exit and the end of what it printed on stderr.
fn failure(result: &drydock_sdk::ExecResult) -> String {
    let exit = result
        .exit_code
        .map_or("was killed or did not start".to_string(), |c| {
            format!("exited with {c}")
        });
    let stderr = result.stderr.trim();
    let tail = stderr.lines().last().unwrap_or("");
    format!("{exit}: {tail}")
}

impl Blueprint for WorkingCopy {
    type Config = Config;
    const NAME: &'static str = "working-copy";
    const RESOURCE_TYPE: &'static str = "working-copy";
    const DESCRIPTION: &'static str = "Git working copies on leased hosts: cloned once per copy, \
        fetched and checked out at the ref each lease asks for, cleaned between leases.";
    const CONFIG_SCHEMA: &'static str = r#"{"type": "object", "properties": {
        "directory": {"type": "string"}, "timeout_ms": {"type": "integer", "minimum": 1}},
        "additionalProperties": false}"#;

    fn validate_config(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn can_allocate_resource(call: &Call<Config>) -> AllocationVerdict {
        match call.lease().attribute(REPOSITORY) {
            Some(repository) if !repository.is_empty() => AllocationVerdict::Yes,
            _ => AllocationVerdict::Never,
        }
    }

    fn allocate_resource(call: &Call<Config>) -> Step {
        let lease = call.lease();
        let Some(repository) = lease.attribute(REPOSITORY) else {
            return Step::fail("the lease names no `repository`");
        };
        // The lease that made the copy and the time make its directory unique.
        let path = format!("{}/{}-{}", call.config().directory, lease.id, call.now());
        Step::done()
            .request_lease(HOST, "host", Vec::new())
            .set_attribute(REPOSITORY, repository)
            .set_attribute(PATH, path)
    }

    fn activate_resource(call: &Call<Config>) -> Step {
        let host_active = call
            .supporting_lease(HOST)
            .is_some_and(|s| s.lease.status == LeaseStatus::Active);
        if !host_active {
            return Step::yield_for(Duration::from_secs(1)).log("waiting for a host");
        }
        let (path, repository) = match (Self::path(call), call.resource().attribute(REPOSITORY)) {
            (Ok(path), Some(repository)) => (path, repository),
            _ => return Step::fail("the working copy lost its `path` or `repository`"),
        };
        match call.exec_result("clone") {
            None => Step::yield_for(Duration::ZERO).action(Self::git(
                call,
                "clone",
                script::CLONE,
                &[path, repository],
            )),
            Some(result) if result.exit_code == Some(0) => {
                Step::done().log(format!("cloned {repository} into {path}"))
            }
            Some(result) => Step::fail(format!("cloning {repository} {}", failure(result))),
        }
    }

    fn can_acquire_lease(call: &Call<Config>) -> bool {
        call.lease().attribute(REPOSITORY) == call.resource().attribute(REPOSITORY)
    }

    fn acquire_lease(call: &Call<Config>) -> Step {
        Step::done().take_slot_locks([copy_lock(&call.resource().id)])
    }

    fn activate_lease(call: &Call<Config>) -> Step {
        let path = match Self::path(call) {
            Ok(path) => path,
            Err(why) => return Step::fail(why),
        };
        let wanted = call.lease().attribute(REF).unwrap_or("");
        match call.exec_result("checkout") {
            None => Step::yield_for(Duration::ZERO).action(Self::git(
                call,
                "checkout",
                script::CHECKOUT,
                &[path, wanted],
            )),
            Some(result) if result.exit_code == Some(0) => {
                let commit = result.stdout.trim();
                Step::done()
                    .set_attribute(COMMIT, commit)
                    .log(format!("checked out {commit} in {path}"))
            }
            Some(result) => {
                let what = if wanted.is_empty() {
                    "the default branch"
                } else {
                    wanted
                };
                Step::fail(format!("checking out {what} {}", failure(result)))
            }
        }
    }

    fn release_lease(call: &Call<Config>) -> Step {
        let Ok(path) = Self::path(call) else {
            return Step::done();
        };
        match call.exec_result("clean") {
            None => Step::yield_for(Duration::ZERO).action(Self::git(
                call,
                "clean",
                script::CLEAN,
                &[path],
            )),
            Some(result) if result.exit_code == Some(0) => Step::done(),
            // The next lease's checkout cleans again; nothing here may keep the lease alive.
            Some(result) => Step::done().log(format!("cleaning {path} {}", failure(result))),
        }
    }

    fn destroy_resource(call: &Call<Config>) -> Step {
        let host_active = call
            .supporting_lease(HOST)
            .is_some_and(|s| s.lease.status == LeaseStatus::Active);
        let (Ok(path), true) = (Self::path(call), host_active) else {
            return Step::done();
        };
        match call.exec_result("remove") {
            None => Step::yield_for(Duration::ZERO).action(Self::git(
                call,
                "remove",
                script::REMOVE,
                &[path],
            )),
            Some(result) if result.exit_code == Some(0) => {
                Step::done().log(format!("removed {path}"))
            }
            Some(result) => Step::done().log(format!("removing {path} {}", failure(result))),
        }
    }

    fn interface(call: &Call<Config>) -> Result<CommandInterface, String> {
        let path = Self::path(call)?;
        let host = call
            .supporting_lease(HOST)
            .and_then(|s| s.interface.clone())
            .ok_or("the host lease is not active")?;
        match host {
            CommandInterface::Local(local) => Ok(CommandInterface::Local(LocalInterface {
                root: format!("{}/{path}", local.root.trim_end_matches('/')),
            })),
            CommandInterface::Ssh(ssh) => Ok(CommandInterface::Ssh(SshInterface {
                root: Some(match &ssh.root {
                    Some(root) => format!("{}/{path}", root.trim_end_matches('/')),
                    None => path.to_string(),
                }),
                ..ssh
            })),
        }
    }
}

export_blueprint!(WorkingCopy);

#[cfg(test)]
mod tests;
