#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (the wasm target,
# the Python and JavaScript componentizers, Chromium and chromedriver, PostgreSQL's server
# binaries, bubblewrap), then checks formatting, lints and runs every test. Fails loudly when
# something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

# Prints how long each stage took, so a slow one shows in CI's log.
stage_started=$SECONDS
stage() {
    echo "== $1 (after $((SECONDS - stage_started)) s)"
}
trap 'echo "== done in $((SECONDS - stage_started)) s"' EXIT

stage "toolchains"

# tests/build.rs builds the Rust guests; tests/tests/languages.rs the Python and JS blueprints.
install_blueprint_toolchains
rustup component add rustfmt clippy

# The browser tests drive Debian's Chromium through chromedriver.
install_if_missing /usr/bin/chromium chromium chromium-driver
install_if_missing /usr/bin/chromedriver chromium-driver
need chromium
need chromedriver
# The PostgreSQL tests (tests/tests/postgres.rs) start throwaway clusters with the server's own
# binaries (initdb, pg_ctl; as the postgres user when run as root); no server needs to run.
install_if_missing '/usr/lib/postgresql/*/bin/initdb' postgresql
if [ "$(id -u)" -eq 0 ]; then
    need runuser
    id postgres >/dev/null 2>&1 || { echo "error: running as root, the PostgreSQL tests need a postgres user" >&2; exit 1; }
fi
# The SSH tests (tests/tests/ssh.rs) start a throwaway sshd on a loopback port with keys of their
# own; nothing is configured on the machine.
install_if_missing /usr/sbin/sshd openssh-server
need ssh
need ssh-keygen
# Local execs run under bubblewrap (tests/tests/confinement.rs and every test that runs one); the
# caps need a writable cgroup with the pids and memory controllers (as root here).
install_exec_sandbox
# The fault suite (tests/tests/faults.rs) mounts a small tmpfs (as root) and counts overlapping
# runs in the world with flock.
need mount
need flock

stage "fmt"
cargo fmt --all --check
stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings
stage "build the tests"
cargo test --workspace --no-run
stage "test"
cargo test --workspace
