#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (the wasm target,
# Chromium and chromedriver, the Python and JavaScript componentizers), then checks
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

# The Python and JavaScript example blueprints are built by their componentizers:
# componentize-py from PyPI here, componentize-js from npm by blueprints/scratch-js/build.sh.
need python3
need npm
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r blueprints/scratch-py/requirements.txt
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
need componentize-py

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
