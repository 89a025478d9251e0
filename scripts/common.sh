# Shared by serve.sh and test.sh (sourced, from the repository root): a check that names a
# missing tool, and the toolchains that build the example blueprints.

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required but not installed" >&2; exit 1; }
}

# The Rust guests need the wasm32-wasip2 target; the Python blueprint needs componentize-py
# (pinned in its requirements.txt); the JavaScript one gets componentize-js from npm in its
# build.sh.
install_blueprint_toolchains() {
    need cargo
    need rustup
    need python3
    need npm
    rustup target add wasm32-wasip2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        -r blueprints/scratch-py/requirements.txt
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    need componentize-py
}
