//! `drydock token …`: the API's tokens with roles (`crate::access`), kept in the database so
//! that every daemon on it honours them. Operator set-up, like `blueprint add`: it works on the
//! database directly.

use super::{Global, author, output};
use crate::access::{self, Role};
use crate::store::{Access, NewToken, Token};
use clap::Subcommand;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Make a token and print its secret (shown this once; the database keeps only a hash).
    Create {
        /// Its name: the owner of the leases it requests, and what `revoke` takes.
        name: String,
        /// What it may do: `viewer` reads; `requester` also requests leases and releases and
        /// runs commands on its own; `operator` does everything.
        #[arg(long)]
        role: Role,
        /// How long it works (`30d`, `12h`); for ever without.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// The only resource types it may lease (`--type host,working-copy`).
        #[arg(long = "type", value_delimiter = ',')]
        types: Vec<String>,
        /// Print one JSON document (with the secret).
        #[arg(long)]
        json: bool,
    },
    /// List the tokens (never their secrets), revoked ones too.
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every daemon on the database refuses it at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub(super) async fn run(global: &Global, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let access = match command {
        TokenCommand::List { .. } => Access::Read,
        TokenCommand::Create { .. } | TokenCommand::Revoke { .. } => Access::Write,
    };
    let store = global.store(access).await?;
    match command {
        TokenCommand::Create {
            name,
            role,
            expires,
            types,
            json,
        } => {
            let secret = access::new_secret();
            let expires_at = expires.map(|after| store.now() + after.as_millis() as u64);
            let new = NewToken {
                name: access::token_name(&name).map_err(anyhow::Error::msg)?,
                role,
                secret_hash: access::secret_hash(&secret),
                resource_types: (!types.is_empty()).then_some(types),
                expires_at,
                created_by: author(),
            };
            let token = store.token_insert(&new).await?;
            if json {
                output::json(&serde_json::json!({ "token": token, "secret": secret }))?;
            } else {
                println!("{secret}");
                eprintln!(
                    "made the {} token {:?}: the line above is its secret, shown this once; \
                     clients send it as `Authorization: Bearer …`",
                    token.role, token.name
                );
            }
        }
        TokenCommand::List { json } => {
            let tokens = store.token_list().await?;
            if json {
                output::json(&tokens)?;
            } else {
                list(&tokens);
            }
        }
        TokenCommand::Revoke { name } => {
            let token = store.token_revoke(&name).await?;
            println!("revoked {:?}", token.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(tokens: &[Token]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                output::safe(&t.name).into_owned(),
                t.role.to_string(),
                t.resource_types
                    .as_ref()
                    .map_or_else(|| "any".into(), |types| types.join(",")),
                output::maybe_time(t.expires_at),
                output::time(t.created_at),
                output::safe(&t.created_by).into_owned(),
                output::maybe_time(t.revoked_at),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "ROLE", "TYPES", "EXPIRES", "CREATED", "BY", "REVOKED",
        ],
        &rows,
    );
}
