//! An on-disk cache of compiled components, so a restart does not recompile.
//!
//! Entries are keyed by the SHA-256 of the wasm bytes and the engine's compatibility hash (which
//! changes with the wasmtime version and the compilation settings). A stale or corrupt entry is
//! ignored and replaced; writes go through a temporary file and a rename.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// The hex SHA-256 of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ComponentCache {
    /// A cache in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    /// The conventional location: `$XDG_CACHE_HOME/drydock/components`, else `~/.cache/…`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(base.join("drydock").join("components"))
    }

    fn entry(&self, engine: &Engine, wasm_digest: &str) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{wasm_digest}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled component for `wasm`, from the cache or freshly compiled (and then stored).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_digest: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.entry(engine, wasm_digest);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` for an engine with the same
            // compatibility hash, into a directory only this host writes to.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(?path, %error, "ignoring a bad cached component"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = self.store(&path, &component.serialize()?) {
            tracing::warn!(?path, %error, "could not cache a compiled component");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, path)
    }
}
