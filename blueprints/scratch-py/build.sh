#!/usr/bin/env bash
# Builds this blueprint into a component: build.sh [OUT.wasm] (default scratch-py.wasm here).
# Needs componentize-py (pip install -r requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/scratch-py.wasm}")"
command -v componentize-py >/dev/null || {
    echo "error: componentize-py is missing: pip install -r $here/requirements.txt" >&2
    exit 1
}
# Build from a copy, so that Python's bytecode cache stays out of the source folder.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here"/*.py "$work"
cd "$work"
componentize-py --quiet --wit-path "$here/../../wit/v0.2.0" --world blueprint componentize app --output "$out"
