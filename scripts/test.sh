#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then checks
# formatting, lints and runs every test. Fails loudly when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required but not installed" >&2; exit 1; }
}
need cargo
need rustup

# Blueprints and test components are built for this target by tests/build.rs.
rustup target add wasm32-wasip2
rustup component add rustfmt clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
