//! `drydock login` and `drydock context …`: the client's named contexts (`super::config`).

use super::Global;
use super::config::{self, Config, Context};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::io::BufRead as _;
use std::process::ExitCode;

/// Arguments of `drydock login`.
#[derive(Debug, clap::Args)]
pub(super) struct LoginArgs {
    /// The context's name; the server's host (and port) by default.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum ContextCommand {
    /// List the contexts, marking the current one.
    List,
    /// Make a context the current one.
    Use {
        /// Its name.
        name: String,
    },
}

/// The configuration file, which must be found.
fn config_path() -> anyhow::Result<std::path::PathBuf> {
    config::path().context("no configuration file: set HOME, XDG_CONFIG_HOME or DRYDOCK_CONFIG")
}

/// `drydock login --server URL`: checks a token against the server and keeps both as a
/// context, the current one from now on. The token comes from `--token-file`, `DRYDOCK_TOKEN`
/// or standard input.
pub(super) async fn login(global: &Global, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let Some(server) = global.server.clone() else {
        bail!("drydock login needs the server: drydock login --server URL");
    };
    // One Ctrl-C listener for the whole login: a Ctrl-C while the token is typed unechoed, or
    // while the server is asked, ends it with the terminal as it was.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")?;
    let interrupted = || {
        eprintln!("interrupted: no token kept");
        Ok(ExitCode::from(130))
    };
    let token = match global.token()? {
        Some(token) => token,
        None => match read_token(&mut interrupt).await? {
            Some(token) => token,
            None => return interrupted(),
        },
    };
    let remote = super::remote::Remote::new(&server, Some(token.clone()))?;
    let me = tokio::select! {
        me = remote.whoami() => me?,
        _ = interrupt.recv() => return interrupted(),
    };
    let name = match args.name {
        Some(name) => name,
        None => default_name(&server)?,
    };
    let name = config::context_name(&name)?;
    let path = config_path()?;
    let mut config = Config::load(&path)?;
    let tokens = path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("tokens");
    config::private_dir(&tokens)?;
    let token_file = tokens.join(&name);
    config::write_private(&token_file, format!("{token}\n").as_bytes())?;
    config.contexts.insert(
        name.clone(),
        Context {
            server: server.trim_end_matches('/').to_string(),
            token_file: Some(token_file),
        },
    );
    config.current_context = Some(name.clone());
    config.save(&path)?;
    println!(
        "signed in to {server} as {} ({}); the context {name:?} is the current one ({})",
        crate::text::escape(&me.name),
        me.role,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A context's name for `server`: its host, and port if it has one.
fn default_name(server: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(server).with_context(|| format!("{server:?} is not a URL"))?;
    let host = url.host_str().context("the server's URL names no host")?;
    let host = host.trim_matches(['[', ']']).replace(':', "-");
    Ok(match url.port() {
        Some(port) => format!("{host}-{port}"),
        None => host,
    })
}

/// Reads a token from standard input: typed at a terminal (not echoed), or piped. `None` when
/// `interrupt` comes first (Ctrl-C), after giving the terminal its echo back.
async fn read_token(interrupt: &mut tokio::signal::unix::Signal) -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    let at_terminal = rustix::termios::isatty(&stdin);
    let echo = at_terminal
        .then(|| hide_echo(&stdin))
        .transpose()
        .context("turning off the terminal's echo")?;
    if at_terminal {
        eprint!("token: ");
    }
    // A thread of its own, which the process does not wait for if it is interrupted.
    let (line_tx, line) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = line_tx.send(read);
    });
    let read = tokio::select! {
        read = line => Some(read),
        _ = interrupt.recv() => None,
    };
    if let Some(saved) = echo {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
    }
    let Some(read) = read else {
        return Ok(None);
    };
    let line = read
        .context("the thread reading standard input")?
        .context("reading the token from standard input")?;
    let token = line.trim().to_string();
    if token.is_empty() {
        bail!("no token given: pass --token-file, set DRYDOCK_TOKEN or type it");
    }
    Ok(Some(token))
}

/// Turns the terminal's echo off; what to restore.
fn hide_echo(stdin: &std::io::Stdin) -> rustix::io::Result<rustix::termios::Termios> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Now, &quiet)?;
    Ok(saved)
}

/// `drydock context list` and `drydock context use NAME`.
pub(super) fn context(command: ContextCommand) -> anyhow::Result<ExitCode> {
    let path = config_path()?;
    let mut config = Config::load(&path)?;
    match command {
        ContextCommand::List => {
            let current = config.current_context.as_deref();
            let rows: Vec<Vec<String>> = config
                .contexts
                .iter()
                .map(|(name, context)| {
                    let mark = if Some(name.as_str()) == current {
                        "*"
                    } else {
                        ""
                    };
                    vec![mark.into(), name.clone(), context.server.clone()]
                })
                .collect();
            super::output::table(&["CURRENT", "NAME", "SERVER"], &rows);
        }
        ContextCommand::Use { name } => {
            config.context(Some(&name))?;
            config.current_context = Some(name.clone());
            config.save(&path)?;
            println!("the context {name:?} is the current one");
        }
    }
    Ok(ExitCode::SUCCESS)
}
