#!/usr/bin/env bash
# Builds this blueprint into a component: build.sh [OUT.wasm] (default scratch-js.wasm here).
# Installs componentize-js from package-lock.json on first use (npm ci).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/scratch-js.wasm}")"
command -v npm >/dev/null || { echo "error: npm is missing: install Node.js and npm" >&2; exit 1; }
cd "$here"
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund --silent
# The sandbox grants no WASI HTTP; leave those features out of the component.
node_modules/.bin/componentize-js app.js --wit ../../wit/v0.2.0 --world-name blueprint \
    --disable http fetch-event --out "$out" >/dev/null
