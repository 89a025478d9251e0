#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (the wasm target,
# the Python and JavaScript componentizers, cargo-nextest, Chromium and chromedriver,
# PostgreSQL's server binaries, bubblewrap), then checks formatting, builds, lints and runs every
# test. Fails loudly when something is missing.
#
#   scripts/test.sh                  # everything, as CI runs it
#   scripts/test.sh --quick [NAME…]  # the edit-test loop, on a warm build: every unit test, and
#                                    # the end-to-end tests NAME (tests/tests/NAME.rs), by default
#                                    # those whose files changed since the last commit
#
# Tests run under cargo-nextest (.config/nextest.toml): one process per test, binaries side by
# side, and a test that runs for four minutes is killed and fails with its name. The last lines
# say which stage failed and which tests, or list the slowest tests of a passing run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

quick=false
if [ "${1:-}" = "--quick" ]; then
    quick=true
    shift
fi

# What nextest printed, for the closing summary.
results=$(mktemp)
stage_started=$SECONDS
current_stage="start"

# Prints how long each stage took, so a slow one shows in CI's log.
stage() {
    current_stage=$1
    echo "== $1 (after $((SECONDS - stage_started)) s)"
}

# The closing lines: on failure the stage and the failed tests; on success the slowest tests.
finish() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "== FAILED in stage \"$current_stage\" (exit $status) after $((SECONDS - stage_started)) s"
        grep -E '^ *(FAIL|TIMEOUT|SIGABRT|SIGKILL|SIGSEGV|ABORT|LEAK-FAIL) \[' "$results" | sort -u |
            sed -E 's/^ */   /' || true
    else
        echo "== the slowest tests"
        slowest_tests "$results" 10
        echo "== done in $((SECONDS - stage_started)) s"
    fi
    rm -f "$results"
}
trap finish EXIT

# The N slowest passing tests in nextest's output FILE, slowest first.
slowest_tests() {
    # awk reads the whole sorted list (head would stop early, and sort, still writing, would
    # die of SIGPIPE: under pipefail, a passing run reported as failed).
    sed -nE 's/^ *PASS \[ *([0-9.]+)s\] (\( *[0-9]+\/[0-9]+\) )?(.*)$/\1 \3/p' "$1" |
        sort -rn | awk -v n="$2" 'NR <= n { printf "   %7.1f s  %s\n", $1, substr($0, index($0, " ") + 1) }'
}

# Runs nextest with ARGS, its output also kept for the summary.
nextest() {
    cargo nextest run --workspace --no-tests=warn "$@" 2>&1 | tee -a "$results"
}

# Names the drydock binary the end-to-end tests run in DRYDOCK_BINARY (tests/src/lib.rs), so
# that no test process builds it under its own clock. The workspace's test build makes it (the
# host's own integration tests need it); --build builds it alone, for a run of some tests.
use_drydock_binary() {
    [ "${1:-}" != "--build" ] || cargo build -p drydock-host --bin drydock
    export DRYDOCK_BINARY="$PWD/${CARGO_TARGET_DIR:-target}/debug/drydock"
    [ -x "$DRYDOCK_BINARY" ] || { echo "error: $DRYDOCK_BINARY was not built" >&2; exit 1; }
}

# The end-to-end test binaries whose files changed since the last commit (tests/tests/NAME.rs).
changed_end_to_end_tests() {
    { git diff --name-only HEAD; git ls-files --others --exclude-standard; } |
        sed -nE 's|^tests/tests/([a-z_]+)\.rs$|\1|p' | sort -u
}

if $quick; then
    stage "quick"
    names=("$@")
    [ ${#names[@]} -gt 0 ] || mapfile -t names < <(changed_end_to_end_tests)
    targets=(--lib --bins)
    for name in "${names[@]}"; do
        targets+=(--test "$name")
    done
    echo "unit tests, and end-to-end: ${names[*]:-none}"
    use_drydock_binary --build
    nextest "${targets[@]}"
    exit 0
fi

stage "toolchains"

# tests/build.rs builds the Rust guests; tests/tests/languages.rs the Python and JS blueprints.
install_blueprint_toolchains
rustup component add rustfmt clippy
# The test runner (per-test timeouts, binaries in parallel).
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
need cargo-nextest

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
# The build comes before clippy: it compiles the build scripts, the proc macros and the guest
# components (tests/build.rs) that clippy's check then reuses.
stage "build the tests"
cargo nextest run --workspace --no-run
use_drydock_binary
stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings
stage "test"
nextest
stage "doctests"
cargo test --workspace --doc
