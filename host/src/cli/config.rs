//! The client's configuration file: named contexts, each a server and the file holding the
//! token to send it, like kubeconfig's. `drydock login` writes it; `--context NAME` (or
//! `DRYDOCK_CONTEXT`) picks a context, else the file's `current-context` does, unless the
//! command names a server or a database of its own.
//!
//! ```toml
//! current-context = "ci"
//!
//! [contexts.ci]
//! server = "https://drydock.example.com"
//! token-file = "/home/alice/.config/drydock/tokens/ci"
//! ```
//!
//! The file is `$DRYDOCK_CONFIG`, else `$XDG_CONFIG_HOME/drydock/config.toml`, else
//! `~/.config/drydock/config.toml`; it and the token files are written readable by their
//! owner alone (0600, in a 0700 directory).

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct Config {
    /// The context used when a command names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// A server and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct Context {
    /// The daemon's URL.
    pub server: String,
    /// The file holding the token; none for a server whose reads are public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// Where the file is, if a home can be found.
pub(super) fn path() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(file) = var("DRYDOCK_CONFIG") {
        return Some(file.into());
    }
    let dir = match var("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(var("HOME")?).join(".config"),
    };
    Some(dir.join("drydock").join("config.toml"))
}

impl Config {
    /// The file at `path`; an empty configuration when there is none.
    pub(super) fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the file at `path`, readable by its owner alone, replacing it whole.
    pub(super) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("writing the configuration")?;
        write_private(path, text.as_bytes())
    }

    /// The context named `name`, or the current one when `name` is `None` (if any).
    pub(super) fn context(&self, name: Option<&str>) -> anyhow::Result<Option<(&str, &Context)>> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get_key_value(name) {
            Some((name, context)) => Ok(Some((name.as_str(), context))),
            None => {
                let known: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
                let known = match known.is_empty() {
                    true => "none yet: `drydock login --server URL` makes one".to_string(),
                    false => known.join(", "),
                };
                bail!("there is no context named {name:?} (the contexts: {known})")
            }
        }
    }
}

/// Writes `bytes` to `path` through a new file renamed into place, mode 0600, its directory
/// made 0700 if missing: a reader sees the old file or the new one, never half of one.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_private_dir(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let staged = dir.join(format!(".{name}.{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&staged, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// Makes `dir` and its missing parents, for their user alone; one that exists is let be.
fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("making {}", dir.display()))
}

/// Makes `dir` for its user alone, and takes every other user's access away if it exists: for
/// a directory that is Drydock's own (the tokens' beside the configuration).
pub(super) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    make_private_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", dir.display()))
}

/// `name` if it can name a context: what can name a token, but not starting with a dot (its
/// token is kept in a file of that name).
pub(super) fn context_name(name: &str) -> anyhow::Result<String> {
    let why = match crate::access::token_name(name) {
        Err(why) => why,
        Ok(_) if name.starts_with('.') => {
            format!("{name:?} cannot name a context: it starts with a dot")
        }
        Ok(name) => return Ok(name),
    };
    Err(anyhow::anyhow!("{why}").context("naming the context"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_round_trips_and_names_its_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drydock").join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        let mut config = Config::default();
        config.contexts.insert(
            "ci".into(),
            Context {
                server: "https://drydock.example.com".into(),
                token_file: Some("/tokens/ci".into()),
            },
        );
        config.current_context = Some("ci".into());
        config.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded, config);
        let (name, context) = loaded.context(None).unwrap().unwrap();
        assert_eq!(
            (name, context.server.as_str()),
            ("ci", "https://drydock.example.com")
        );
        let error = loaded.context(Some("prod")).unwrap_err().to_string();
        assert_eq!(
            error,
            "there is no context named \"prod\" (the contexts: ci)"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[contexts.ci]\nserver = \"http://x\"\ntoken = \"secret\"\n",
        )
        .unwrap();
        let error = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(error.contains("unknown field `token`"), "{error}");
    }

    #[test]
    fn a_context_s_name_is_a_plain_file_name() {
        assert_eq!(context_name("ci.example-6080").unwrap(), "ci.example-6080");
        for bad in [".", "..", ".hidden", "a/b", "a b", ""] {
            let error = format!("{:#}", context_name(bad).unwrap_err());
            assert!(
                error.starts_with("naming the context: "),
                "{bad:?}: {error}"
            );
            assert!(error.contains("cannot name a"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_private_directory_is_made_private_even_when_it_exists() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (open, fresh) = (dir.path().join("open"), dir.path().join("a/fresh"));
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        for made in [&open, &fresh] {
            private_dir(made).unwrap();
            let mode = std::fs::metadata(made).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", made.display());
        }
    }
}
