#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (the wasm target,
# the Python and JavaScript componentizers, Chromium and chromedriver), then checks formatting,
# lints and runs every test. Fails loudly when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

# tests/build.rs builds the Rust guests; tests/tests/languages.rs the Python and JS blueprints.
install_blueprint_toolchains
rustup component add rustfmt clippy

# The browser tests drive Debian's Chromium through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: chromium and chromium-driver are missing; install them (apt-get install chromium chromium-driver) or run as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
need chromium
need chromedriver
# The fault suite (tests/tests/faults.rs) mounts a small tmpfs (as root) and counts overlapping
# runs in the world with flock.
need mount
need flock

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
