//! The host-pool configuration and its validation.

use drydock_sdk::{CommandInterface, LocalInterface, SshInterface};
use serde::Deserialize;
use std::collections::HashSet;

/// The JSON Schema shown by `drydock blueprint check`.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["hosts"],
  "additionalProperties": false,
  "properties": {
    "hosts": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["name", "interface"],
        "additionalProperties": false,
        "properties": {
          "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
          "interface": {
            "oneOf": [
              {"type": "object", "required": ["type", "root"],
               "properties": {"type": {"const": "local"}, "root": {"type": "string"}}},
              {"type": "object", "required": ["type", "host", "user", "key_path"],
               "properties": {"type": {"const": "ssh"}, "host": {"type": "string"},
                              "port": {"type": "integer", "default": 22},
                              "user": {"type": "string"}, "key_path": {"type": "string"},
                              "root": {"type": "string"}}}
            ]
          }
        }
      }
    }
  }
}"#;

/// The blueprint's configuration: the hosts of the pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The hosts, each made into one resource.
    pub hosts: Vec<Host>,
}

/// One host of the pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Unique name; also the resource's `name` attribute and part of its slot lock.
    pub name: String,
    /// How commands reach the host.
    pub interface: HostInterface,
}

/// How commands reach a host.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum HostInterface {
    /// Local processes run in `root`.
    Local {
        /// Absolute directory commands run in.
        root: String,
    },
    /// Commands run over SSH.
    Ssh {
        /// Host name or address.
        host: String,
        /// TCP port.
        #[serde(default = "default_ssh_port")]
        port: u16,
        /// Remote user.
        user: String,
        /// Absolute path of the private key on the Drydock machine.
        key_path: String,
        /// The remote directory commands start in; the login directory if not given.
        #[serde(default)]
        root: Option<String>,
    },
}

fn default_ssh_port() -> u16 {
    22
}

impl Config {
    /// Checks what the types cannot: a non-empty list, unique well-formed names, sound interfaces.
    pub fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("`hosts` is empty: list at least one host".into());
        }
        let mut seen = HashSet::new();
        for (index, host) in self.hosts.iter().enumerate() {
            let at = format!("hosts[{index}]");
            validate_name(&host.name).map_err(|e| format!("{at}.name: {e}"))?;
            if !seen.insert(host.name.as_str()) {
                return Err(format!("{at}.name: duplicate host name {:?}", host.name));
            }
            host.interface
                .validate()
                .map_err(|e| format!("{at}.interface: {e}"))?;
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.len() > 63 || !first_ok || !rest_ok {
        return Err(format!(
            "{name:?} is not a host name: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

impl HostInterface {
    fn validate(&self) -> Result<(), String> {
        match self {
            HostInterface::Local { root } if !root.starts_with('/') => {
                Err(format!("local root {root:?} must be an absolute path"))
            }
            HostInterface::Local { .. } => Ok(()),
            HostInterface::Ssh { host, .. } if host.trim().is_empty() => {
                Err("ssh host is empty".into())
            }
            HostInterface::Ssh { port: 0, .. } => Err("ssh port 0 is not a port".into()),
            HostInterface::Ssh { user, .. } if user.trim().is_empty() => {
                Err("ssh user is empty".into())
            }
            HostInterface::Ssh { key_path, .. } if !key_path.starts_with('/') => Err(format!(
                "ssh key_path {key_path:?} must be an absolute path"
            )),
            HostInterface::Ssh { .. } => Ok(()),
        }
    }

    /// The contract's form of this interface.
    pub fn to_command_interface(&self) -> CommandInterface {
        match self {
            HostInterface::Local { root } => {
                CommandInterface::Local(LocalInterface { root: root.clone() })
            }
            HostInterface::Ssh {
                host,
                port,
                user,
                key_path,
                root,
            } => CommandInterface::Ssh(SshInterface {
                host: host.clone(),
                port: *port,
                user: user.clone(),
                key_path: key_path.clone(),
                root: root.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let config: Config = drydock_sdk::serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.validate()
    }

    #[test]
    fn accepts_the_documented_example() {
        parse(r#"{"hosts": [{"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}}]}"#)
            .unwrap();
    }

    #[test]
    fn rejects_bad_configs_with_the_reason() {
        let cases = [
            (r#"{"hosts": []}"#, "`hosts` is empty"),
            (
                r#"{"hosts": [{"name": "a", "interface": {"type": "local", "root": "/a"}},
                              {"name": "a", "interface": {"type": "local", "root": "/b"}}]}"#,
                "hosts[1].name: duplicate host name \"a\"",
            ),
            (
                r#"{"hosts": [{"name": "a", "interface": {"type": "local", "root": "rel"}}]}"#,
                "absolute",
            ),
            (
                r#"{"hosts": [{"name": "a", "interface": {"type": "ssh", "host": "", "user": "u", "key_path": "/k"}}]}"#,
                "ssh host is empty",
            ),
            (
                r#"{"hosts": [{"name": "a b", "interface": {"type": "local", "root": "/a"}}]}"#,
                "not a host name",
            ),
            (
                r#"{"hosts": [{"name": "a", "interface": {"type": "ftp"}}]}"#,
                "unknown variant `ftp`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err:?} lacks {expected:?}");
        }
    }
}
