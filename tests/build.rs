//! Builds every blueprint in `blueprints/` and every test component in `tests/components/` for
//! `wasm32-wasip2`, once per build, and tells the tests where the `.wasm` files are through
//! `DRYDOCK_WASM_<NAME>` environment variables.
//!
//! The guests are built by a nested cargo into their own target directory (`target/guests`), so
//! it never waits on the lock the outer build holds.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";
const GUEST_PROFILE: &str = "guest";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let guests = guest_packages(&workspace);
    for dir in ["blueprints", "tests/components", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let target_dir = workspace.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--target",
            GUEST_TARGET,
            "--profile",
            GUEST_PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in &guests {
        command.args(["-p", package]);
    }
    clear_outer_build_env(&mut command);
    let status = command
        .status()
        .expect("running cargo to build the guest components");
    if !status.success() {
        panic!(
            "building the guest components for {GUEST_TARGET} failed (see above). If the target \
             is missing, install it with `rustup target add {GUEST_TARGET}`."
        );
    }

    let out = target_dir.join(GUEST_TARGET).join(GUEST_PROFILE);
    for (package, _) in &guests {
        let file = out.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.exists(), "{} was not built", file.display());
        let var = format!("DRYDOCK_WASM_{}", package.replace('-', "_").to_uppercase());
        println!("cargo:rustc-env={var}={}", file.display());
    }
}

/// Every package under `blueprints/*` and `tests/components/*`, with its directory.
fn guest_packages(workspace: &Path) -> Vec<(String, PathBuf)> {
    let mut packages = Vec::new();
    for parent in ["blueprints", "tests/components"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace.join(parent))
            .unwrap_or_else(|e| panic!("reading {parent}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("Cargo.toml").exists())
            .collect();
        dirs.sort();
        for dir in dirs {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            packages.push((package_name(&manifest, &dir), dir));
        }
    }
    packages
}

fn package_name(manifest: &str, dir: &Path) -> String {
    manifest
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no package name in {}", dir.display()))
}

/// Drops what the outer cargo set for this build script, so the nested cargo starts clean.
fn clear_outer_build_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS";
        if outer {
            command.env_remove(key.as_ref());
        }
    }
}
