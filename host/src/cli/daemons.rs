//! `drydock daemon list`: the daemons serving the database, from the registry each keeps its
//! row in while it runs.

use super::{Global, output};
use crate::store::Access;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum DaemonCommand {
    /// List the daemons: those serving now, and those gone silent without stopping cleanly
    /// (killed, or cut off from the database).
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(global: &Global, command: DaemonCommand) -> anyhow::Result<ExitCode> {
    let store = global.store(Access::Read).await?;
    let DaemonCommand::List { json } = command;
    let daemons = store.daemon_list().await?;
    if json {
        output::json(&daemons)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = store.now();
    let rows: Vec<Vec<String>> = daemons
        .iter()
        .map(|d| {
            let state = match d.is_serving(now) {
                true => "serving",
                false => "silent",
            };
            vec![
                output::safe(&d.name).into_owned(),
                state.to_string(),
                output::safe(&d.version).into_owned(),
                output::time(d.started_at),
                output::time(d.seen_at),
            ]
        })
        .collect();
    output::table(&["NAME", "STATE", "VERSION", "STARTED", "SEEN"], &rows);
    Ok(ExitCode::SUCCESS)
}
