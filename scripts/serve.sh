#!/usr/bin/env bash
# The main job: builds Drydock and the example blueprints, registers the host-pool blueprint
# (once) and runs the daemon on the embedded SQLite default (./drydock.db, or
# $DRYDOCK_DATABASE_URL). Extra arguments go to `drydock serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo build --release -p drydock-host
cargo build -p host-pool --target wasm32-wasip2 --profile guest --target-dir target/guests

export DRYDOCK_DATABASE_URL="${DRYDOCK_DATABASE_URL:-sqlite://drydock.db}"
drydock=target/release/drydock
if ! "$drydock" blueprint show host-pool >/dev/null 2>&1; then
    "$drydock" blueprint add host-pool \
        --wasm target/guests/wasm32-wasip2/guest/host_pool.wasm \
        --config blueprints/host-pool/example.json
fi
mkdir -p /tmp/drydock
exec "$drydock" serve "$@"
