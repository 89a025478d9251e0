//! `drydock resource …`: inspecting, releasing and reclaiming resources.

use super::service::Service;
use super::{Global, output};
use crate::ops::{self, parse_id};
use crate::store::{Access, CommandKind, ObjectId, Page, Resource};
use clap::Subcommand;
use std::borrow::Cow;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum ResourceCommand {
    /// List resources, newest first, a page at a time (`--before` the last id for the next).
    List {
        /// Which resources.
        #[command(flatten)]
        filter: ops::ListFilter,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one resource with its leases and slot locks.
    Show {
        /// Resource id, such as `R3`.
        id: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Queue a release for resources (their leases are released first).
    Release {
        /// Resource ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every resource that can still be released.
        #[arg(long)]
        all: bool,
    },
    /// Queue a reclaim: release resources only if no lease holds them.
    Reclaim {
        /// Resource ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

impl ResourceCommand {
    /// What the command does to the database: releases and reclaims write.
    fn access(&self) -> Access {
        match self {
            ResourceCommand::Release { .. } | ResourceCommand::Reclaim { .. } => Access::Write,
            ResourceCommand::List { .. } | ResourceCommand::Show { .. } => Access::Read,
        }
    }
}

pub(super) async fn run(global: &Global, command: ResourceCommand) -> anyhow::Result<ExitCode> {
    let service = global.service(command.access()).await?;
    let service = service.as_ref();
    match command {
        ResourceCommand::List { filter, json } => list(service.resources(&filter).await?, json),
        ResourceCommand::Show { id, json } => {
            let detail = service.resource(parse_id(&id, "resource")?).await?;
            if json {
                output::json(&detail)?;
            } else {
                show(&detail);
            }
            Ok(ExitCode::SUCCESS)
        }
        ResourceCommand::Release { ids, all } => {
            let targets: Vec<ObjectId> = match all {
                true => service.releasable_resources().await?,
                false => ids
                    .iter()
                    .map(|id| parse_id(id, "resource"))
                    .collect::<Result<_, _>>()?,
            };
            post_all(service, &targets, CommandKind::Release).await
        }
        ResourceCommand::Reclaim { ids } => {
            let targets: Vec<ObjectId> = ids
                .iter()
                .map(|id| parse_id(id, "resource"))
                .collect::<Result<_, _>>()?;
            post_all(service, &targets, CommandKind::Reclaim).await
        }
    }
}

/// Queues `kind` for every target, all or none: one refused target (named, with why) means
/// nothing is queued and the exit is non-zero.
pub(super) async fn post_all(
    service: &dyn Service,
    targets: &[ObjectId],
    kind: CommandKind,
) -> anyhow::Result<ExitCode> {
    let verb = kind.as_str();
    if targets.is_empty() {
        println!("nothing to {verb}");
        return Ok(ExitCode::SUCCESS);
    }
    match service.post_all(targets, kind).await {
        Ok(commands) => {
            for command in commands {
                println!("{}: {verb} queued (command {})", command.target, command.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let error = crate::text::escape(&format!("{error:#}")).into_owned();
            eprintln!("error: {error}; nothing was queued");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn list(page: Page<Resource>, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&page.items)?;
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.status.to_string(),
                    r.resource_type.clone(),
                    r.blueprint_id.to_string(),
                    output::attributes(&r.attributes),
                    output::end(r.end.as_ref()),
                ]
            })
            .collect();
        output::table(
            &["ID", "STATUS", "TYPE", "BLUEPRINT", "ATTRIBUTES", "END"],
            &rows,
        );
    }
    output::next_page(page.next.map(ObjectId::Resource));
    Ok(ExitCode::SUCCESS)
}

fn show(detail: &ops::ResourceDetail) {
    let (resource, leases, locks) = (&detail.resource, &detail.leases, &detail.slot_locks);
    println!("id:            {}", resource.id);
    println!("status:        {}", resource.status);
    println!("resource type: {}", resource.resource_type);
    println!("blueprint:     {}", resource.blueprint_id);
    println!(
        "attributes:    {}",
        output::attributes(&resource.attributes)
    );
    println!("until:         {}", output::maybe_time(resource.until));
    println!("created:       {}", output::time(resource.created_at));
    let leases: Vec<String> = leases
        .iter()
        .map(|l| format!("{} ({})", l.id, l.status))
        .collect();
    println!(
        "leases:        {}",
        if leases.is_empty() {
            "-".into()
        } else {
            leases.join(", ")
        }
    );
    let locks: Vec<Cow<str>> = locks.iter().map(|l| output::safe(&l.name)).collect();
    println!(
        "slot locks:    {}",
        if locks.is_empty() {
            "-".into()
        } else {
            locks.join(", ")
        }
    );
    println!("end:           {}", output::end(resource.end.as_ref()));
    println!("work:          {}", output::safe(&detail.work.to_string()));
}
