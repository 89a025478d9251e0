//! `drydock blueprint …`: registering and inspecting blueprints.

use super::{Global, output, read_input};
use crate::limits::Limit;
use crate::ops;
use crate::plugin::{Runtime, RuntimeConfig};
use crate::store::{Access, Blueprint, BlueprintSwitch};
use crate::testkit::scenario::Scenario;
use crate::testkit::{Harness, Lifecycle};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum BlueprintCommand {
    /// Register a component with a config; the component validates the config first.
    Add {
        /// A unique name, such as `host-pool`.
        name: String,
        /// The component (`.wasm`).
        #[arg(long)]
        wasm: PathBuf,
        /// The JSON config (`-` for standard input); `{}` if omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// What its command interfaces may reach: `local:/DIR` (with what its execs get:
        /// `,ro=/PATH`, `,pids=N`, `,memory=SIZE`, `,user=NAME`, `,env=NAME=VALUE`),
        /// `ssh:USER@HOST[:PORT]` (`*` matches any run of characters), `ssh-key:/DIR`; and
        /// which blueprints it may hold
        /// supporting leases on: `use:NAME` (as `blueprint authorize`); repeatable. Without a
        /// grant the blueprint can run commands only through supporting leases it is
        /// authorized to hold.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// The largest component accepted, in MiB.
        #[arg(long, default_value_t = crate::plugin::DEFAULT_MAX_COMPONENT_BYTES >> 20)]
        max_component_mib: usize,
        /// Print the blueprint as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch a blueprint to a new component and/or config, in place: calls that start
    /// afterwards use them, resources and leases stay, and the change is logged on it.
    Update {
        /// Id or name.
        blueprint: String,
        /// The new component (`.wasm`); it must make the same resource type.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The new JSON config (`-` for standard input); validated by the component.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The largest component accepted, in MiB.
        #[arg(long, default_value_t = crate::plugin::DEFAULT_MAX_COMPONENT_BYTES >> 20)]
        max_component_mib: usize,
        /// Print the blueprint as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a blueprint more grants (see `add --grant`).
    Grant {
        /// Id or name.
        blueprint: String,
        /// Grants to add.
        #[arg(required = true)]
        grants: Vec<String>,
    },
    /// Take grants away from a blueprint.
    Revoke {
        /// Id or name.
        blueprint: String,
        /// Grants to take away.
        #[arg(required = true)]
        grants: Vec<String>,
    },
    /// Let a blueprint hold supporting leases on other blueprints' resources (and run commands
    /// through them): adds the grant `use:NAME` for each `--use NAME`.
    Authorize {
        /// Id or name of the blueprint that requests the leases.
        blueprint: String,
        /// Name of a blueprint whose resources it may lease; repeatable.
        #[arg(long = "use", value_name = "BLUEPRINT", required = true)]
        uses: Vec<String>,
    },
    /// Take authorizations away (the grants `use:NAME`): new supporting leases on those
    /// blueprints are refused; those it holds stay until they are released.
    Unauthorize {
        /// Id or name of the blueprint that requests the leases.
        blueprint: String,
        /// Name of a blueprint it may no longer lease from; repeatable.
        #[arg(long = "use", value_name = "BLUEPRINT", required = true)]
        uses: Vec<String>,
    },
    /// Set a blueprint's limits, as KEY=VALUE (`KEY=default` goes back to the default): how
    /// fast and wide it grows and what it may write. `blueprint show` lists them all with their
    /// values; docs/ARCHITECTURE.md has the defaults.
    Limit {
        /// Id or name.
        blueprint: String,
        /// Changes, such as `setting-up=4`, `log-per-minute=256K`, `log-total=default`.
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
    },
    /// List blueprints.
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one blueprint, by id (`B1`) or name.
    Show {
        /// Id or name.
        blueprint: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Let the allocator use a blueprint again, at once: clears its back-off too.
    Enable {
        /// Id or name.
        blueprint: String,
    },
    /// Clear a blueprint's failure streak and back-off, so that the leases waiting for it are
    /// served at once (after fixing what made it fail).
    Reset {
        /// Id or name.
        blueprint: String,
    },
    /// Stop the allocator from using a blueprint; its resources stay.
    Disable {
        /// Id or name.
        blueprint: String,
    },
    /// Load a component, print its description and validate a config, without a database.
    Check {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// A JSON config to validate (`-` for standard input).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also drive a lease through the whole life (allocate → … → destroy) on in-memory
        /// snapshots with the config (`{}` if none), printing every step.
        #[arg(long)]
        lifecycle: bool,
        /// The lease's resource type for `--lifecycle`; the component's own by default.
        #[arg(long = "type", requires = "lifecycle")]
        resource_type: Option<String>,
        /// A lease attribute for `--lifecycle`, as KEY=VALUE; repeatable.
        #[arg(long = "attr", requires = "lifecycle", value_parser = super::lease::parse_attribute)]
        attributes: Vec<(String, String)>,
        /// A grant to check the interface against in `--lifecycle`, as with `add --grant`;
        /// repeatable.
        #[arg(long = "grant", requires = "lifecycle")]
        grants: Vec<String>,
        /// Serve the supporting leases a resource requests of TYPE with a local directory, as
        /// TYPE=local:/DIR (a host the operator granted); repeatable.
        #[arg(long = "supply", requires = "lifecycle", value_parser = parse_supply)]
        supplies: Vec<(String, String)>,
        /// What `exec` actions do in `--lifecycle`: `run` them for real through the supplied
        /// directory, or take each as succeeding with no output (`ok`).
        #[arg(long = "exec", requires = "lifecycle", value_enum)]
        exec: Option<ExecMode>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run scenario files against a component, without a database: each drives a lease through
    /// its life with a config, supplied supporting leases and canned exec results, and lists
    /// every difference from what it expects (hooks, execs, attributes, logs, interface).
    Test {
        /// The scenario files (JSON; see docs/BLUEPRINTS.md).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// The component (`.wasm`) to test, instead of each scenario's `component`.
        #[arg(long)]
        wasm: Option<PathBuf>,
    },
}

/// What `blueprint check --lifecycle` does with `exec` actions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum ExecMode {
    /// Run them through the supporting lease's interface.
    Run,
    /// Answer each with exit code 0 and no output.
    Ok,
}

/// `TYPE=local:/DIR`.
fn parse_supply(text: &str) -> Result<(String, String), String> {
    let (resource_type, target) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not TYPE=local:/DIR"))?;
    let root = target.strip_prefix("local:").ok_or_else(|| {
        format!("{target:?} is not local:/DIR (only local directories can be supplied)")
    })?;
    Ok((resource_type.to_string(), root.to_string()))
}

pub(super) async fn run(global: &Global, command: BlueprintCommand) -> anyhow::Result<ExitCode> {
    match command {
        BlueprintCommand::Check {
            wasm,
            config,
            lifecycle,
            resource_type,
            attributes,
            grants,
            supplies,
            exec,
            json,
        } => {
            let lifecycle = lifecycle.then_some(LifecycleArgs {
                resource_type,
                attributes,
                grants,
                supplies,
                exec,
            });
            tokio::task::spawn_blocking(move || check(&wasm, config.as_deref(), lifecycle, json))
                .await?
        }
        BlueprintCommand::Test { scenarios, wasm } => {
            tokio::task::spawn_blocking(move || test(&scenarios, wasm.as_deref())).await?
        }
        BlueprintCommand::Add {
            name,
            wasm,
            config,
            grants,
            max_component_mib,
            json,
        } => {
            let limits = (grants, max_component_mib << 20);
            add(global, name, &wasm, config.as_deref(), limits, json).await
        }
        BlueprintCommand::Update {
            blueprint,
            wasm,
            config,
            max_component_mib,
            json,
        } => {
            let files = (wasm.as_deref(), config.as_deref());
            update(global, &blueprint, files, max_component_mib << 20, json).await
        }
        BlueprintCommand::Grant { blueprint, grants } => {
            change_grants(global, &blueprint, &grants, &[]).await
        }
        BlueprintCommand::Revoke { blueprint, grants } => {
            change_grants(global, &blueprint, &[], &grants).await
        }
        BlueprintCommand::Authorize { blueprint, uses } => {
            change_grants(global, &blueprint, &use_grants(&uses), &[]).await
        }
        BlueprintCommand::Unauthorize { blueprint, uses } => {
            change_grants(global, &blueprint, &[], &use_grants(&uses)).await
        }
        BlueprintCommand::Limit { blueprint, changes } => {
            change_limits(global, &blueprint, &changes).await
        }
        BlueprintCommand::List { json } => list(global, json).await,
        BlueprintCommand::Show { blueprint, json } => {
            let service = global.service(Access::Read).await?;
            print_one(&service.blueprint(&blueprint).await?, json)
        }
        BlueprintCommand::Enable { blueprint } => {
            switch(global, &blueprint, BlueprintSwitch::Enable).await
        }
        BlueprintCommand::Disable { blueprint } => {
            switch(global, &blueprint, BlueprintSwitch::Disable).await
        }
        BlueprintCommand::Reset { blueprint } => {
            switch(global, &blueprint, BlueprintSwitch::Reset).await
        }
    }
}

/// Reads a component file, refusing one over `max_bytes` before reading it.
fn read_component(max_bytes: usize, wasm: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(wasm)
        .with_context(|| format!("reading {}", wasm.display()))?
        .len();
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > max_bytes {
        let too_large = crate::plugin::Error::TooLarge {
            size,
            limit: max_bytes,
        };
        return Err(anyhow::Error::new(too_large).context(format!("refusing {}", wasm.display())));
    }
    std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))
}

async fn add(
    global: &Global,
    name: String,
    wasm: &Path,
    config: Option<&Path>,
    (grants, max_component_bytes): (Vec<String>, usize),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config_text = match config {
        Some(path) => read_input(path)?,
        None => "{}".to_string(),
    };
    let bytes = read_component(max_component_bytes, wasm)?;
    let service = global.service(Access::Setup).await?;
    let request = ops::BlueprintRequest {
        name,
        wasm: bytes,
        config: config_text,
        grants,
    };
    let blueprint = service
        .add_blueprint(request, max_component_bytes)
        .await
        .with_context(|| format!("adding {}", wasm.display()))?;
    if json {
        output::json(&blueprint)?;
    } else {
        println!(
            "{} {} ({} resources from {}; grants: {})",
            blueprint.id,
            blueprint.name,
            blueprint.resource_type,
            blueprint.component_name,
            grant_list(&blueprint)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(
    global: &Global,
    text: &str,
    (wasm, config): (Option<&Path>, Option<&Path>),
    max_component_bytes: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = wasm
        .map(|w| read_component(max_component_bytes, w))
        .transpose()?;
    let config = config.map(read_input).transpose()?;
    let service = global.service(Access::Write).await?;
    let updated = service
        .update_blueprint(text, (bytes, config), max_component_bytes)
        .await
        .with_context(|| format!("updating {}", output::safe(text)))?;
    if json {
        output::json(&updated)?;
    } else {
        println!(
            "{} {} updated to version {} (component {} from {})",
            updated.id,
            updated.name,
            updated.version,
            &updated.component[..updated.component.len().min(12)],
            updated.component_name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn change_grants(
    global: &Global,
    text: &str,
    grant: &[String],
    revoke: &[String],
) -> anyhow::Result<ExitCode> {
    let service = global.service(Access::Write).await?;
    let blueprint = service.change_grants(text, grant, revoke).await?;
    println!(
        "{} {} grants: {}",
        blueprint.id,
        blueprint.name,
        grant_list(&blueprint)
    );
    Ok(ExitCode::SUCCESS)
}

async fn change_limits(
    global: &Global,
    text: &str,
    changes: &[String],
) -> anyhow::Result<ExitCode> {
    let service = global.service(Access::Write).await?;
    let blueprint = service.change_limits(text, changes).await?;
    println!("{} {} limits:", blueprint.id, blueprint.name);
    print_limits(&blueprint);
    Ok(ExitCode::SUCCESS)
}

/// Every limit with its value, marking the defaults, and what the quotas hold now.
fn print_limits(blueprint: &Blueprint) {
    for limit in Limit::ALL {
        let value = limit.format(blueprint.limits.get(limit));
        let default = if blueprint.limits.is_set(limit) {
            ""
        } else {
            " (default)"
        };
        let kept = match limit {
            Limit::LogTotal => Some(blueprint.log_bytes),
            Limit::StepHistory => Some(blueprint.step_bytes),
            _ => None,
        };
        let kept = kept.map_or(String::new(), |bytes| {
            format!("; {} kept now", crate::size::format(bytes.max(0) as u64))
        });
        println!("  {:<24} {value}{default}{kept}", limit.key());
    }
}

/// The authorizations `use:NAME` for blueprint names.
fn use_grants(names: &[String]) -> Vec<String> {
    names.iter().map(|name| format!("use:{name}")).collect()
}

fn grant_list(blueprint: &Blueprint) -> String {
    match blueprint.grants.as_slice() {
        [] => "none".into(),
        grants => grants
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Enabled or disabled, and failing when its allocations or activations keep failing.
fn state(blueprint: &Blueprint) -> String {
    let switch = if blueprint.enabled {
        "enabled"
    } else {
        "disabled"
    };
    match blueprint.is_failing() {
        true => format!("{switch}, failing"),
        false => switch.into(),
    }
}

async fn list(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let blueprints = global.service(Access::Read).await?.blueprints().await?;
    if json {
        output::json(&blueprints)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = blueprints
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                b.name.clone(),
                b.resource_type.clone(),
                b.component_name.clone(),
                state(b),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "TYPE", "COMPONENT", "STATE"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn print_one(blueprint: &Blueprint, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(blueprint)?;
        return Ok(ExitCode::SUCCESS);
    }
    let safe = |text: &str| crate::text::escape(text).into_owned();
    println!("id:            {}", blueprint.id);
    println!("name:          {}", blueprint.name);
    println!("resource type: {}", blueprint.resource_type);
    println!(
        "component:     {} ({})",
        blueprint.component_name, blueprint.component
    );
    println!("version:       {}", blueprint.version);
    println!("state:         {}", state(blueprint));
    println!("grants:        {}", safe(&grant_list(blueprint)));
    if blueprint.failures > 0 {
        println!(
            "failures:      {} in a row; the last: {}",
            blueprint.failures,
            safe(blueprint.last_failure.as_deref().unwrap_or("-"))
        );
        println!("next try:      {}", output::maybe_time(blueprint.retry_at));
    }
    println!("added:         {}", output::time(blueprint.created_at));
    // On one line: a config file's own line breaks would show as escapes.
    let config = serde_json::from_str::<serde_json::Value>(&blueprint.config)
        .map_or_else(|_| blueprint.config.clone(), |value| value.to_string());
    println!("config:        {}", safe(&config));
    println!("limits:");
    print_limits(blueprint);
    Ok(ExitCode::SUCCESS)
}

/// Enables, disables or resets a blueprint and says what it did (its log entry).
async fn switch(global: &Global, text: &str, switch: BlueprintSwitch) -> anyhow::Result<ExitCode> {
    let service = global.service(Access::Write).await?;
    let before = service.blueprint(text).await?;
    let after = service
        .switch_blueprint(&before.id.to_string(), switch)
        .await?;
    println!("{} {} {}", after.id, after.name, switch.message(&before));
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct CheckReport {
    name: String,
    resource_type: String,
    contract_version: String,
    description: String,
    config_schema: serde_json::Value,
    digest: String,
    config_valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle: Option<Lifecycle>,
}

/// What `--lifecycle` asks for.
struct LifecycleArgs {
    resource_type: Option<String>,
    attributes: Vec<(String, String)>,
    grants: Vec<String>,
    supplies: Vec<(String, String)>,
    exec: Option<ExecMode>,
}

/// Loads, describes and checks a component; runs on a blocking thread (the test kit drives
/// calls on its own runtime).
fn check(
    wasm: &Path,
    config: Option<&Path>,
    lifecycle: Option<LifecycleArgs>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let bytes = read_component(runtime.max_component_bytes(), wasm)?;
    let plugin = runtime
        .load(&bytes)
        .with_context(|| format!("loading {}", wasm.display()))?;
    let mut kit = Harness::over(plugin.clone())?;
    let description = kit.describe().context("calling describe")?;
    crate::action::check_description(&description)
        .map_err(|why| anyhow::anyhow!("the component describes itself badly: {why}"))?;
    let config_text = config.map(read_input).transpose()?;
    let verdict = config.zip(config_text.as_deref()).map(|(path, text)| {
        kit.validate_config(text)
            .with_context(|| format!("config {} is invalid", path.display()))
    });
    let lifecycle = match (lifecycle, &verdict) {
        (Some(args), None | Some(Ok(()))) => {
            kit.configure(config_text.as_deref().unwrap_or("{}"))?;
            kit.grant(&ops::parse_grants(&args.grants)?);
            for (resource_type, root) in &args.supplies {
                let interface = crate::domain::CommandInterface::Local { root: root.clone() };
                kit.supply(resource_type, interface)
                    .with_context(|| format!("--supply {resource_type}=local:{root}"))?;
            }
            match args.exec {
                Some(ExecMode::Run) => kit.run_execs(),
                Some(ExecMode::Ok) => kit.on_exec(|request| crate::domain::ExecResult {
                    id: request.id.clone(),
                    exit_code: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                }),
                None => kit.on_exec(|request| crate::domain::ExecResult {
                    id: request.id.clone(),
                    exit_code: None,
                    stdout: String::new(),
                    stderr: "blueprint check runs no exec without --exec run (for real, in the \
                             --supply directory) or --exec ok"
                        .into(),
                }),
            }
            let resource_type = args
                .resource_type
                .unwrap_or_else(|| description.resource_type.clone());
            let attributes = args
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            Some(kit.lifecycle(&resource_type, attributes))
        }
        _ => None,
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
        config_valid: verdict.as_ref().map(Result::is_ok),
        lifecycle,
    };
    if json {
        output::json(&report)?;
    } else {
        print_report(&report)?;
    }
    verdict.transpose()?;
    if let Some(failure) = report.lifecycle.and_then(|l| l.failure) {
        bail!("the lifecycle stopped: {failure}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs each scenario and says how it went, with every difference and the lifecycle of a
/// failed one; fails if any failed. Runs on a blocking thread, like `check`.
fn test(paths: &[PathBuf], wasm: Option<&Path>) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut failed = 0;
    for path in paths {
        let scenario = Scenario::load(path)?;
        let component = scenario.component_path(path, wasm)?;
        let plugin = runtime
            .load(&read_component(runtime.max_component_bytes(), &component)?)
            .with_context(|| format!("loading {}", component.display()))?;
        let report = scenario
            .run(plugin)
            .with_context(|| format!("running the scenario {}", path.display()))?;
        let calls = report.lifecycle.calls.len();
        if report.differences.is_empty() {
            println!("ok    {} ({calls} hook calls)", path.display());
            continue;
        }
        failed += 1;
        let count = report.differences.len();
        println!("FAIL  {} ({count} differences)", path.display());
        for difference in &report.differences {
            println!("  {}:", output::safe(&difference.what));
            println!("    want: {}", output::safe(&difference.want));
            println!("    got:  {}", output::safe(&difference.got));
        }
        print_lifecycle(&report.lifecycle)?;
    }
    if failed > 0 {
        bail!("{failed} of {} scenarios failed", paths.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &CheckReport) -> anyhow::Result<()> {
    println!("name:             {}", report.name);
    println!("resource type:    {}", report.resource_type);
    println!(
        "contract version: drydock:blueprint@{}",
        report.contract_version
    );
    println!("sha256:           {}", report.digest);
    println!("description:      {}", report.description);
    println!("config schema:");
    for line in serde_json::to_string_pretty(&report.config_schema)?.lines() {
        println!("  {line}");
    }
    if report.config_valid == Some(true) {
        println!("config:           valid");
    }
    if let Some(lifecycle) = &report.lifecycle {
        print_lifecycle(lifecycle)?;
    }
    Ok(())
}

fn print_lifecycle(lifecycle: &Lifecycle) -> anyhow::Result<()> {
    println!("lifecycle:");
    for call in &lifecycle.calls {
        for step in &call.steps {
            println!(
                "  {:<18} {:<4} {}",
                call.hook,
                call.object,
                serde_json::to_string(step)?
            );
        }
        for line in call.output.lines() {
            let line = output::safe(line);
            println!("  {:<18} {:<4} printed: {line}", call.hook, call.object);
        }
        // The interface is asked for once the lease is active.
        if let (Some(interface), "activate-lease") = (&lifecycle.interface, call.hook.as_str()) {
            let interface = serde_json::to_string(interface)?;
            println!("  {:<18} {:<4} {interface}", "interface", call.object);
        }
    }
    match &lifecycle.failure {
        None => println!("  complete: every hook finished with done"),
        Some(failure) => println!("  stopped: {}", crate::text::escape_lines(failure)),
    }
    Ok(())
}
