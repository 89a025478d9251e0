#!/usr/bin/env bash
# The main job: builds Drydock and the example blueprints, registers them (once, then updated
# in place whenever the build differs) with the grants their configs need, and runs the daemon on the embedded SQLite default (./drydock.db,
# or $DRYDOCK_DATABASE_URL, such as postgres://USER@HOST/DATABASE for several daemons):
#   host-pool   (Rust)        type `host`, blueprints/host-pool/example.json,
#                             local:/tmp/drydock,ro=/tmp/demo.git (its execs may read the README's
#                             demo repository)
#   working-copy (Rust)       type `working-copy`, git working copies on those hosts: use:host-pool
#                             (authorized to lease host-pool's hosts; it narrows their interfaces)
#   scratch-py  (Python)      type `scratch`, blueprints/scratch-py/example.json, local:/tmp/drydock-scratch
#   scratch-js  (JavaScript)  type `scratch`, blueprints/scratch-js/example.json, local:/tmp/drydock-scratch
# The operator token (for the web UI and the API) is kept in target/operator-token; this script
# prints the `export DRYDOCK_TOKEN=…` line to copy into another terminal. Extra arguments go to
# `drydock serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/common.sh

# Several daemons started at once from this checkout build and register one at a time.
mkdir -p target
exec 9>target/serve.lock
flock 9
[ -x target/release/drydock ] ||
    echo "serve.sh: the first build takes about 10 minutes on 2 cores (wasmtime); later ones seconds" >&2
install_blueprint_toolchains
install_exec_sandbox
cargo build --release -p drydock-host
cargo build -p host-pool -p working-copy --target wasm32-wasip2 --profile guest --target-dir target/guests
mkdir -p target/guests
blueprints/scratch-py/build.sh target/guests/scratch-py.wasm
blueprints/scratch-js/build.sh target/guests/scratch-js.wasm

export DRYDOCK_DATABASE_URL="${DRYDOCK_DATABASE_URL:-sqlite://drydock.db}"
drydock=target/release/drydock
# This build's schema first: the CLI never upgrades one that an older build made.
"$drydock" migrate
register() { # NAME WASM [GRANT] (another daemon starting on the same database may win the race)
    local shown
    if ! shown=$("$drydock" blueprint show "$1" --json 2>/dev/null); then
        "$drydock" blueprint add "$1" --wasm "$2" --config "blueprints/$1/example.json" ${3:+--grant "$3"} ||
            "$drydock" blueprint show "$1" >/dev/null
        return
    fi
    if ! grep -q "$(sha256sum <"$2" | cut -d' ' -f1)" <<<"$shown"; then
        # Registered from an older build (or contract): the daemon runs this checkout's.
        "$drydock" blueprint update "$1" --wasm "$2"
    fi
    # Registered with an older grant (before its options, say): this checkout's replaces it.
    if [ -n "${3:-}" ] && ! grep -qF "\"$3\"" <<<"$shown"; then
        "$drydock" blueprint grant "$1" "$3"
    fi
}
register host-pool target/guests/wasm32-wasip2/guest/host_pool.wasm local:/tmp/drydock,ro=/tmp/demo.git
register working-copy target/guests/wasm32-wasip2/guest/working_copy.wasm use:host-pool
register scratch-py target/guests/scratch-py.wasm local:/tmp/drydock-scratch
register scratch-js target/guests/scratch-js.wasm local:/tmp/drydock-scratch
# What the grants name.
mkdir -p /tmp/drydock /tmp/drydock-scratch
token_file=target/operator-token
if [ ! -s "$token_file" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
fi
exec 9>&- # releases the lock
if [ -n "${DRYDOCK_TOKEN:-}" ] || [[ " $* " == *" --token-file"* ]]; then
    exec "$drydock" serve "$@" # the operator's own token
fi
echo "serve.sh: the operator token, for the web UI and the API, is in $token_file; in another terminal:" >&2
echo "    export DRYDOCK_TOKEN=$(cat "$token_file")" >&2
exec "$drydock" serve --token-file "$token_file" "$@"
