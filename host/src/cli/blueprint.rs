//! `drydock blueprint …`: inspecting blueprint components.

use super::read_input;
use crate::plugin::{Runtime, RuntimeConfig};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(super) enum BlueprintCommand {
    /// Load a component, print its description and validate a config, without a daemon.
    Check {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// A JSON config to validate (`-` for standard input).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: BlueprintCommand) -> anyhow::Result<()> {
    match command {
        BlueprintCommand::Check { wasm, config, json } => check(wasm, config, json),
    }
}

#[derive(Serialize)]
struct CheckReport {
    name: String,
    resource_type: String,
    contract_version: String,
    description: String,
    config_schema: serde_json::Value,
    digest: String,
    config: Option<ConfigVerdict>,
}

#[derive(Serialize)]
struct ConfigVerdict {
    valid: bool,
    error: Option<String>,
}

fn check(wasm: PathBuf, config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load_file(&wasm)?;
    let description = plugin.describe().context("calling describe")?.value;
    let verdict = match &config {
        Some(path) => {
            let text = read_input(path)?;
            let result = plugin.validate_config(&text).context("calling validate-config")?;
            Some(ConfigVerdict {
                valid: result.value.is_ok(),
                error: result.value.err(),
            })
        }
        None => None,
    };
    let schema = serde_json::from_str(&description.config_schema)
        .unwrap_or(serde_json::Value::String(description.config_schema.clone()));
    let report = CheckReport {
        name: description.name,
        resource_type: description.resource_type,
        contract_version: plugin.contract_version().to_string(),
        description: description.description,
        config_schema: schema,
        digest: plugin.digest().to_string(),
        config: verdict,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report)?;
    }
    match &report.config {
        Some(ConfigVerdict { error: Some(reason), .. }) => {
            let path = config.unwrap_or_default();
            bail!("config {} is invalid: {reason}", path.display())
        }
        _ => Ok(()),
    }
}

fn print_report(report: &CheckReport) -> anyhow::Result<()> {
    println!("name:             {}", report.name);
    println!("resource type:    {}", report.resource_type);
    println!("contract version: drydock:blueprint@{}", report.contract_version);
    println!("sha256:           {}", report.digest);
    println!("description:      {}", report.description);
    println!("config schema:");
    for line in serde_json::to_string_pretty(&report.config_schema)?.lines() {
        println!("  {line}");
    }
    if let Some(ConfigVerdict { valid: true, .. }) = report.config {
        println!("config:           valid");
    }
    Ok(())
}
