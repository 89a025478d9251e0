//! `drydock command list`, `drydock log` (and its `--steps` audit trail) and `drydock gc`.

use super::{Global, output};
use crate::store::{Access, CommandFilter, ObjectId, StepRecord};
use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum CommandCommand {
    /// List queued and consumed commands.
    List {
        /// Only commands for this object (`L12`, `R3`).
        #[arg(long)]
        target: Option<ObjectId>,
        /// Only commands not consumed yet.
        #[arg(long)]
        pending: bool,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(super) struct LogArgs {
    /// Only entries about this object (`B1`, `R3`, `L12`).
    #[arg(long)]
    object: Option<ObjectId>,
    /// Instead of log entries, the audit trail of this lease or resource: every step its
    /// blueprint returned (hook, actions, outcome, duration) and whether the host applied it.
    #[arg(long, value_name = "ID", conflicts_with = "object")]
    steps: Option<ObjectId>,
    /// At most this many entries (the newest).
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(global: &Global, command: CommandCommand) -> anyhow::Result<ExitCode> {
    let CommandCommand::List {
        target,
        pending,
        json,
    } = command;
    let service = global.service(Access::Read).await?;
    let commands = service.commands(&CommandFilter { target, pending }).await?;
    if json {
        output::json(&commands)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = commands
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.target.to_string(),
                format!("{:?}", c.kind).to_lowercase(),
                c.author.clone(),
                output::time(c.created_at),
                c.outcome.clone().unwrap_or_else(|| "queued".into()),
            ]
        })
        .collect();
    output::table(
        &["ID", "TARGET", "KIND", "AUTHOR", "QUEUED", "OUTCOME"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn log(global: &Global, args: LogArgs) -> anyhow::Result<ExitCode> {
    let service = global.service(Access::Read).await?;
    let limit = args.limit.max(0);
    if let Some(object) = args.steps {
        return steps(service.steps_last(object, limit).await?, object, args.json);
    }
    let entries = service.log_last(args.object, limit).await?;
    if args.json {
        output::json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    for entry in &entries {
        println!(
            "{}  {:<5} {:<30} {}",
            output::time(entry.created_at),
            entry.object,
            output::safe(&entry.kind),
            output::safe(&entry.message)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an object's audit trail: the steps its blueprint returned.
fn steps(steps: Vec<StepRecord>, object: ObjectId, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    if steps.is_empty() {
        eprintln!("{object} has no recorded steps (none yet, or pruned)");
    }
    for step in &steps {
        println!(
            "{}  {} {:<22} {:>9.3} ms  {}",
            output::time(step.created_at),
            step.blueprint,
            step.hook,
            step.duration_us as f64 / 1000.0,
            output::safe(&step.verdict)
        );
        if let Some(asked) = &step.step {
            println!("    {}", output::safe(asked));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(super) struct GcArgs {
    /// Remove the leases and resources destroyed longer ago than this, with their history.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    older_than: std::time::Duration,
    /// Print what was removed as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn gc(global: &Global, args: GcArgs) -> anyhow::Result<ExitCode> {
    let store = global.store(Access::Write).await?;
    let before = store
        .now()
        .saturating_sub(args.older_than.as_millis() as u64);
    let report = store.gc(before).await?;
    if args.json {
        output::json(&report)?;
    } else {
        println!(
            "removed {} leases and {} resources destroyed before {}, with their {} commands, {} log entries and {} steps",
            report.leases,
            report.resources,
            output::time(before),
            report.commands,
            report.logs,
            report.steps
        );
    }
    Ok(ExitCode::SUCCESS)
}
