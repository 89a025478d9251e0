//! `drydock exec`: runs a command on the resource an active lease holds, through the command
//! interface its blueprint gives (`local` or `ssh`) once it passes the blueprint's grants, with
//! the caller's stdio and an exec's environment (`exec::environment`: none of the caller's
//! variables but `TERM` at a terminal). At a terminal, a local command gets a pseudo-terminal of
//! its own, relayed to the caller's (`exec::terminal`), so it can type nothing into the
//! caller's shell; otherwise it runs in a session of its own, with no terminal. A local command runs in the daemon's sandbox
//! (`exec::confine`), or not at all where the machine cannot confine it, unless
//! `--unconfined-exec`.
//!
//! Through `--server`, the command runs on the server instead, under the same rules (the
//! server's `POST /api/v1/leases/{id}/exec`), with no stdin; its output is streamed back as it
//! comes, and Ctrl-C stops it there.

use super::Global;
use crate::domain::{CommandInterface, LeaseStatus};
use crate::exec::terminal::Terminal;
use crate::exec::{Ids, Stdin};
use crate::ops::parse_id;
use crate::plugin::{Runtime, RuntimeConfig};
use crate::store::Access;
use crate::worker::Plugins;
use anyhow::{Context as _, bail};
use clap::Args;
use std::process::{ExitCode, Stdio};

/// Arguments of `drydock exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The lease, such as `L3`; it must be active.
    #[arg(long)]
    lease: String,
    /// Working directory, relative to the interface's root.
    #[arg(long)]
    cwd: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "ARGV")]
    argv: Vec<String>,
    #[command(flatten)]
    confine: super::confine::ConfineArgs,
}

/// Runs the command and exits with its exit code: here, or through `--server` on the server,
/// streamed.
pub(super) async fn run(global: &Global, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let lease = parse_id(&args.lease, "lease")?;
    if let Some(remote) = global.remote()? {
        args.confine.refuse_remote()?;
        return remote.exec(lease, &args.argv, args.cwd.as_deref()).await;
    }
    let store = global.store(Access::Read).await?;
    let lease = store.lease_get(lease).await?;
    let (LeaseStatus::Active, Some(resource)) = (lease.status, lease.resource_id) else {
        bail!(
            "{} is {}: only an active lease can run commands",
            lease.id,
            lease.status
        );
    };
    let resource = store.resource_get(resource).await?;
    let plugins = Plugins::new(Runtime::new(RuntimeConfig::default())?, 1);
    let reach = match plugins.interface(store.as_ref(), &lease, &resource).await? {
        Ok(reach) => reach,
        Err(reason) => bail!(
            "{} gives no command interface: {}",
            resource.id,
            crate::text::escape(&reason)
        ),
    };
    let ids = Ids {
        lease: Some(lease.id.to_string()),
        resource: Some(resource.id.to_string()),
    };
    let cwd = args.cwd.as_deref();
    let confinement = match &reach.interface {
        CommandInterface::Local { .. } => {
            let found = args.confine.detect(global.database(), None);
            crate::worker::confinement_now(store.as_ref(), &found).await?
        }
        CommandInterface::Ssh { .. } => crate::exec::Confinement::Unconfined,
    };
    // A local command at a terminal gets one of its own, relayed; over SSH the remote side
    // cannot reach the caller's terminal.
    let local = matches!(reach.interface, CommandInterface::Local { .. });
    let stdin = match local && Terminal::at_one() {
        true => Stdin::Terminal,
        false => Stdin::Passed,
    };
    if let Some(why) = crate::exec::missing_program(&reach, &args.argv) {
        eprintln!("error: {}", crate::text::escape(&why));
        return Ok(ExitCode::from(crate::exec::NOT_FOUND as u8));
    }
    let mut prepared = crate::exec::prepare(&reach, &args.argv, cwd, &ids, stdin, &confinement)
        .map_err(anyhow::Error::msg)?;
    let network = prepared.take_network();
    let mut command = prepared.command();
    let running = format!("running {:?} on {}", args.argv[0], resource.id);
    let terminal = match stdin {
        Stdin::Terminal => {
            let terminal = Terminal::open().context("opening a terminal for the command")?;
            terminal.attach(&mut command)?;
            Some(terminal)
        }
        _ => {
            command
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
            None
        }
    };
    let mut child = command.spawn().context(running.clone())?;
    drop(command);
    prepared.close_handed();
    let _link = match network {
        None => None,
        Some(network) => match network.connect().await {
            Ok(link) => Some(link),
            Err(why) => {
                let _ = child.kill().await;
                bail!("{}", crate::text::escape(&why));
            }
        },
    };
    let status = match terminal {
        Some(terminal) => terminal.relay(child).await,
        None => child.wait().await,
    }
    .context(running)?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("error: {:?} was killed by a signal", args.argv[0]);
            ExitCode::FAILURE
        }
    })
}
