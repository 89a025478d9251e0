//! Who may do what through the API: tokens with roles.
//!
//! A token belongs to a name and has one [`Role`]: a **viewer** reads; a **requester** also
//! requests leases (owned by the token's name), and releases its own; an **operator** does
//! everything, including other owners' leases, resources and blueprints. A token may be limited
//! to some resource types and may expire. Tokens are kept in the store (`drydock token create`),
//! so every daemon on a database honours the same ones and a revoked token is refused by all of
//! them at once; only a SHA-256 of each secret is kept ([`secret_hash`]). The operator tokens a
//! daemon is started with (`--token-file`, `DRYDOCK_TOKEN`) are operators on that daemon.

use crate::domain::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads leases, resources, blueprints, commands, logs and steps.
    Viewer,
    /// Also requests leases (owned by the token's name) and releases its own.
    Requester,
    /// Everything: other owners' leases, resources, blueprints, grants and limits.
    Operator,
}

impl Role {
    /// The role's name, as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Requester => "requester",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "requester" => Ok(Role::Requester),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role {other:?}: one of viewer, requester, operator"
            )),
        }
    }
}

/// Who a request comes from: a token's name and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name: the owner of the leases it requests.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The resource types it may lease; `None` for any.
    pub resource_types: Option<Vec<String>>,
}

/// Why a principal may not do something: the message names what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Principal {
    /// An operator of this daemon (its `--token-file` or `DRYDOCK_TOKEN`).
    pub fn operator(name: &str) -> Self {
        Principal {
            name: name.to_string(),
            role: Role::Operator,
            resource_types: None,
        }
    }

    /// Whether the principal has at least `role`, to do `what`.
    pub fn needs(&self, role: Role, what: &str) -> Result<(), Denied> {
        if self.role >= role {
            return Ok(());
        }
        Err(Denied(format!(
            "{what} needs the {role} role; the token {:?} is a {}",
            self.name, self.role
        )))
    }

    /// Whether the principal may request leases of `resource_type`.
    pub fn may_request(&self, resource_type: &str) -> Result<(), Denied> {
        self.needs(Role::Requester, "requesting a lease")?;
        match &self.resource_types {
            Some(types) if !types.iter().any(|t| t == resource_type) => Err(Denied(format!(
                "the token {:?} may lease {} only, not {resource_type:?}",
                self.name,
                types
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the principal may release (or run commands on) a lease owned by `owner`: its
    /// own as a requester, anyone's as an operator.
    pub fn may_act_on_lease(&self, lease: &str, owner: &str, what: &str) -> Result<(), Denied> {
        if self.role >= Role::Operator || (self.role == Role::Requester && owner == self.name) {
            return Ok(());
        }
        self.needs(Role::Requester, what)?;
        Err(Denied(format!(
            "{what} {lease} needs the operator role: it is {owner:?}'s lease, and the token {:?} \
             is a requester, who acts on its own leases only",
            self.name
        )))
    }
}

/// `name` if it can name a token: 1 to 64 letters, digits, `-`, `_`, `.`, `@` or `:` (it
/// becomes the owner of the leases the token requests, and is shown in lists and logs).
pub fn token_name(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@:".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} cannot name a token: use 1 to 64 letters, digits, '-', '_', '.', '@' or ':'"
        ));
    }
    Ok(name.to_string())
}

/// A fresh token secret: `ddt_` and 40 hex digits (160 random bits). The prefix lets secret
/// scanners find one pasted where it should not be.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    format!("ddt_{}", hex::encode(bytes))
}

/// What the store keeps of a secret: its SHA-256, in hex. A secret is 160 random bits, so a
/// fast hash is enough; finding a token by its hash compares no secret byte by byte.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a token that expires at `expires_at` is still good at `now`.
pub fn unexpired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|at| now < at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, types: Option<&[&str]>) -> Principal {
        Principal {
            name: "ci".into(),
            role,
            resource_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn each_role_may_do_what_the_ones_before_it_may() {
        let viewer = principal(Role::Viewer, None);
        let requester = principal(Role::Requester, None);
        let operator = principal(Role::Operator, None);
        assert!(viewer.needs(Role::Viewer, "reading").is_ok());
        let denied = viewer
            .needs(Role::Requester, "requesting a lease")
            .unwrap_err();
        assert_eq!(
            denied.0,
            "requesting a lease needs the requester role; the token \"ci\" is a viewer"
        );
        assert!(requester.needs(Role::Requester, "x").is_ok());
        assert!(requester.needs(Role::Operator, "x").is_err());
        assert!(operator.needs(Role::Operator, "x").is_ok());
    }

    #[test]
    fn a_requester_acts_on_its_own_leases_only() {
        let requester = principal(Role::Requester, None);
        assert!(requester.may_act_on_lease("L1", "ci", "releasing").is_ok());
        let denied = requester
            .may_act_on_lease("L2", "alice", "releasing")
            .unwrap_err();
        assert!(denied.0.contains("\"alice\"'s lease"), "{denied}");
        assert!(denied.0.contains("operator role"), "{denied}");
        let viewer = principal(Role::Viewer, None);
        let denied = viewer
            .may_act_on_lease("L1", "ci", "releasing")
            .unwrap_err();
        assert!(denied.0.contains("requester role"), "{denied}");
        let operator = principal(Role::Operator, None);
        assert!(
            operator
                .may_act_on_lease("L2", "alice", "releasing")
                .is_ok()
        );
    }

    #[test]
    fn a_token_limited_to_types_requests_those_only() {
        let limited = principal(Role::Requester, Some(&["host", "working-copy"]));
        assert!(limited.may_request("host").is_ok());
        let denied = limited.may_request("vm").unwrap_err();
        assert_eq!(
            denied.0,
            "the token \"ci\" may lease \"host\", \"working-copy\" only, not \"vm\""
        );
        assert!(principal(Role::Viewer, None).may_request("host").is_err());
    }

    #[test]
    fn roles_parse_and_secrets_hash() {
        assert_eq!("requester".parse::<Role>(), Ok(Role::Requester));
        assert!("admin".parse::<Role>().unwrap_err().contains("viewer"));
        let secret = new_secret();
        assert!(secret.starts_with("ddt_") && secret.len() == 44, "{secret}");
        assert_ne!(secret, new_secret());
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(token_name("ci-runner@eu").as_deref(), Ok("ci-runner@eu"));
        for bad in ["", "a b", "x\n", &"n".repeat(65)] {
            assert!(token_name(bad).unwrap_err().contains("cannot name a token"));
        }
        assert!(unexpired(None, 5));
        assert!(unexpired(Some(6), 5));
        assert!(!unexpired(Some(5), 5));
    }
}
