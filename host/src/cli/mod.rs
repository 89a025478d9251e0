//! The `drydock` command line: argument parsing and one function per subcommand.
//!
//! Commands print human-readable text by default and one JSON document with `--json`. Every
//! failure exits non-zero with a message naming what was wrong.

mod blueprint;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Drydock: leases on resources made by sandboxed WebAssembly blueprints.
#[derive(Debug, Parser)]
#[command(name = "drydock", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Blueprints: check a component before registering it.
    #[command(subcommand)]
    Blueprint(blueprint::BlueprintCommand),
}

/// Parses the process arguments, runs the command and maps errors to a non-zero exit.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Blueprint(command) => blueprint::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DRYDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
