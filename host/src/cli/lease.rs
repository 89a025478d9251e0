//! `drydock lease …`: requesting, inspecting and releasing leases.

use super::service::Service;
use super::{Global, output};
use crate::domain::LeaseStatus;
use crate::ops::{self, parse_id};
use crate::store::{Access, CommandKind, Lease, ObjectId, Page};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(super) enum LeaseCommand {
    /// Ask for leases on resources of a type.
    Request(RequestArgs),
    /// Show one lease.
    Show {
        /// Lease id, such as `L12`.
        id: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List leases, newest first, a page at a time (`--before` the last id for the next).
    List {
        /// Which leases.
        #[command(flatten)]
        filter: ops::ListFilter,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Queue a release for leases, all or none; the daemon applies it. A supporting lease
    /// belongs to its resource: release the resource instead.
    Release {
        /// Lease ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every lease that can still be released, except supporting leases (which go with
        /// their resources).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct RequestArgs {
    /// The resource type, such as `host`.
    #[arg(long = "type")]
    resource_type: String,
    /// An attribute the resource must satisfy, as KEY=VALUE; repeatable.
    #[arg(long = "attr", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Only use this blueprint (name or id); repeatable.
    #[arg(long = "blueprint")]
    blueprints: Vec<String>,
    /// Release the lease automatically after this long, such as `2h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    until: Option<Duration>,
    /// How many leases to request.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Wait until the leases are active, showing their logs; exit non-zero if they fail.
    #[arg(long)]
    wait: bool,
    /// With `--wait`: give up after this long (the leases are released).
    #[arg(long, value_parser = humantime::parse_duration, requires = "wait")]
    timeout: Option<Duration>,
    /// Print the requested leases as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses `KEY=VALUE`, checking the key's syntax.
pub(super) fn parse_attribute(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    crate::action::check_key("attribute key", key)?;
    Ok((key.to_string(), value.to_string()))
}

impl LeaseCommand {
    /// What the command does to the database: requests and releases write.
    fn access(&self) -> Access {
        match self {
            LeaseCommand::Request(_) | LeaseCommand::Release { .. } => Access::Write,
            LeaseCommand::Show { .. } | LeaseCommand::List { .. } => Access::Read,
        }
    }
}

pub(super) async fn run(global: &Global, command: LeaseCommand) -> anyhow::Result<ExitCode> {
    let service = global.service(command.access()).await?;
    let service = service.as_ref();
    match command {
        LeaseCommand::Request(args) => request(service, args).await,
        LeaseCommand::Show { id, json } => {
            show(&service.lease(parse_id(&id, "lease")?).await?, json)
        }
        LeaseCommand::List { filter, json } => list(service.leases(&filter).await?, json),
        LeaseCommand::Release { ids, all } => {
            let targets: Vec<ObjectId> = match all {
                true => service.releasable_leases().await?,
                false => ids
                    .iter()
                    .map(|id| parse_id(id, "lease"))
                    .collect::<Result<_, _>>()?,
            };
            super::resource::post_all(service, &targets, CommandKind::Release).await
        }
    }
}

async fn request(service: &dyn Service, args: RequestArgs) -> anyhow::Result<ExitCode> {
    let request = ops::LeaseRequest {
        resource_type: args.resource_type,
        attributes: args.attributes.into_iter().collect(),
        blueprints: args.blueprints,
        until: args.until,
        count: args.count,
    };
    let ops::Requested { leases, warning } = service.request_leases(request).await?;
    if let Some(warning) = warning {
        eprintln!("warning: {}", output::safe(&warning));
    }
    if args.json && !args.wait {
        output::json(&leases)?;
    } else if !args.json {
        for lease in &leases {
            println!("{}", lease.id);
        }
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<ObjectId> = leases.iter().map(|l| l.id).collect();
    let outcome = wait_until_active(service, &ids, args.timeout).await;
    if args.json {
        let mut latest = Vec::new();
        for id in &ids {
            latest.push(service.lease(*id).await?.lease);
        }
        output::json(&latest)?;
    }
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            // Each released on its own: one that already ended refuses, the rest still go.
            for id in &ids {
                let _ = service.post_all(&[*id], CommandKind::Release).await;
            }
            Err(error)
        }
    }
}

/// Follows the leases' logs until all are active; fails when one fails or the time runs out.
async fn wait_until_active(
    service: &dyn Service,
    ids: &[ObjectId],
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut seen = BTreeMap::new();
    // One listener for the whole wait, so that no Ctrl-C falls between two polls.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")?;
    if service.serving_daemons().await == Some(0) {
        eprintln!(
            "warning: no daemon is serving this database (none listens on it or has been seen \
             lately: `drydock daemon list`): the leases wait until one does"
        );
    }
    loop {
        // The whole pass is raced against Ctrl-C and the deadline: a call that hangs does not
        // hold the wait.
        let pass = async {
            let all_active = all_active(service, ids, &mut seen).await?;
            if !all_active {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(all_active)
        };
        tokio::select! {
            all_active = pass => if all_active? { return Ok(()) },
            _ = interrupt.recv() => bail!("interrupted; releasing the leases"),
            _ = sleep_until(deadline) => bail!("timed out waiting for the leases to become active; releasing them"),
        }
    }
}

/// Whether every lease is active, after printing their new log lines; fails when one failed.
async fn all_active(
    service: &dyn Service,
    ids: &[ObjectId],
    seen: &mut BTreeMap<ObjectId, i64>,
) -> anyhow::Result<bool> {
    let mut active = 0;
    for id in ids {
        let lease = service.lease(*id).await?.lease;
        print_new_logs(service, *id, seen).await?;
        match lease.status {
            LeaseStatus::Active => active += 1,
            LeaseStatus::Broken | LeaseStatus::Released | LeaseStatus::Destroyed => {
                match &lease.end {
                    Some(end) => bail!("{id} failed: {}", output::safe(&end.to_string())),
                    None => bail!("{id} failed: it is {}", lease.status),
                }
            }
            _ => {}
        }
    }
    Ok(active == ids.len())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn print_new_logs(
    service: &dyn Service,
    id: ObjectId,
    seen: &mut BTreeMap<ObjectId, i64>,
) -> anyhow::Result<()> {
    let after = seen.get(&id).copied().unwrap_or(0);
    for entry in service.log_after(id, after).await? {
        let (kind, message) = (output::safe(&entry.kind), output::safe(&entry.message));
        eprintln!("{} {kind:<28} {message}", entry.object);
        seen.insert(id, entry.id);
    }
    Ok(())
}

fn show(detail: &ops::LeaseDetail, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(detail)?;
        return Ok(ExitCode::SUCCESS);
    }
    let lease = &detail.lease;
    println!("id:            {}", lease.id);
    println!("status:        {}", lease.status);
    println!("resource type: {}", lease.resource_type);
    println!(
        "resource:      {}",
        lease.resource_id.map_or("-".into(), |r| r.to_string())
    );
    println!("attributes:    {}", output::attributes(&lease.attributes));
    println!("owner:         {}", output::safe(&lease.owner));
    println!("until:         {}", output::maybe_time(lease.until));
    println!("created:       {}", output::time(lease.created_at));
    println!("end:           {}", output::end(lease.end.as_ref()));
    println!("work:          {}", output::safe(&detail.work.to_string()));
    Ok(ExitCode::SUCCESS)
}

fn list(page: Page<Lease>, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&page.items).context("printing leases")?;
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|l| {
                vec![
                    l.id.to_string(),
                    l.status.to_string(),
                    l.resource_type.clone(),
                    l.resource_id.map_or("-".into(), |r| r.to_string()),
                    output::attributes(&l.attributes),
                    output::end(l.end.as_ref()),
                ]
            })
            .collect();
        output::table(
            &["ID", "STATUS", "TYPE", "RESOURCE", "ATTRIBUTES", "END"],
            &rows,
        );
    }
    output::next_page(page.next.map(ObjectId::Lease));
    Ok(ExitCode::SUCCESS)
}
