//! A blueprint of type `shell` for the exec tests. Each resource leases a `host`, runs the
//! command its config names there once (`activate-resource`, through an exec action), and
//! records how it ended in its attributes. Its interface narrows the host's: a directory
//! beneath the host's root (`subdir`), or whatever local root the config forces (`root`), to try
//! the grants.

use drydock_sdk::{
    Action, Blueprint, Call, CommandInterface, ExecRequest, LeaseStatus, LocalInterface, Step,
    export_blueprint,
};
use serde::Deserialize;
use std::time::Duration;

/// The shell blueprint.
pub struct Shell;

/// What to run, and how to answer `interface`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The command, run once per resource on its host.
    pub argv: Vec<String>,
    /// Its time limit.
    #[serde(default = "minute")]
    pub timeout_ms: u32,
    /// Its working directory, relative to the host's root.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The interface's directory beneath the host's root.
    #[serde(default)]
    pub subdir: Option<String>,
    /// A local root the interface gives instead, whatever the host.
    #[serde(default)]
    pub root: Option<String>,
}

fn minute() -> u32 {
    60_000
}

/// The supporting lease's key.
const HOST: &str = "host";

impl Blueprint for Shell {
    type Config = Config;
    const NAME: &'static str = "shell";
    const RESOURCE_TYPE: &'static str = "shell";
    const DESCRIPTION: &'static str = "Runs one command on a leased host, for the exec tests.";

    fn allocate_resource(_call: &Call<Config>) -> Step {
        Step::done().request_lease(HOST, "host", Vec::new())
    }

    fn activate_resource(call: &Call<Config>) -> Step {
        let active = call
            .supporting_lease(HOST)
            .is_some_and(|s| s.lease.status == LeaseStatus::Active);
        if !active {
            return Step::yield_for(Duration::from_secs(5)).log("waiting for a host");
        }
        let Some(result) = call.exec_result("run") else {
            let config = call.config();
            return Step::yield_for(Duration::ZERO).action(Action::Exec(ExecRequest {
                id: "run".into(),
                lease_key: HOST.into(),
                argv: config.argv.clone(),
                cwd: config.cwd.clone(),
                timeout_ms: config.timeout_ms,
            }));
        };
        let exit = result.exit_code.map_or("none".into(), |c| c.to_string());
        Step::done()
            .set_attribute("exit", exit)
            .set_attribute("stdout", clip(&result.stdout))
            .set_attribute("stderr", clip(&result.stderr))
    }

    fn interface(call: &Call<Config>) -> Result<CommandInterface, String> {
        if let Some(root) = &call.config().root {
            return Ok(CommandInterface::Local(LocalInterface {
                root: root.clone(),
            }));
        }
        let host = call
            .supporting_lease(HOST)
            .and_then(|s| s.interface.clone())
            .ok_or("the host lease is not active")?;
        Ok(match (host, &call.config().subdir) {
            (CommandInterface::Local(local), Some(subdir)) => {
                CommandInterface::Local(LocalInterface {
                    root: format!("{}/{subdir}", local.root),
                })
            }
            (host, _) => host,
        })
    }
}

/// At most 4 KiB of output, on a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(4096);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

export_blueprint!(Shell);
