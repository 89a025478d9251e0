//! Paths the end-to-end tests and benchmarks share: the guest components built by `build.rs`
//! and the `drydock` binary.

use std::path::{Path, PathBuf};

/// The host-pool blueprint, built for `wasm32-wasip2`.
pub const HOST_POOL_WASM: &str = env!("DRYDOCK_WASM_HOST_POOL");
/// A component that misbehaves in the way its config's `mode` names.
pub const MISBEHAVE_WASM: &str = env!("DRYDOCK_WASM_MISBEHAVE");
/// A component built against a future contract version.
pub const FUTURE_CONTRACT_WASM: &str = env!("DRYDOCK_WASM_FUTURE_CONTRACT");

/// The example host-pool configuration from the README.
pub const HOST_POOL_CONFIG: &str =
    r#"{"hosts": [{"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}}]}"#;

/// The `drydock` binary of the same build as the running test (`target/<profile>/drydock`).
///
/// Cargo builds it because the `drydock-host` package has integration tests of its own.
pub fn drydock_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("unexpected test binary path {}", exe.display()))?;
    let binary = profile_dir.join("drydock");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p drydock-host` (cargo test --workspace does)",
        binary.display()
    );
    Ok(binary)
}
