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

# Installs Debian packages (as root) unless a file matching the glob PROBE exists; fails loudly
# when they are missing and cannot be installed, or are still missing after.
#   install_if_missing PROBE PACKAGE…
install_if_missing() {
    local probe=$1
    shift
    compgen -G "$probe" >/dev/null && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: $probe is missing; install it (apt-get install $*) or run as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    compgen -G "$probe" >/dev/null || { echo "error: $probe is still missing after installing $*" >&2; exit 1; }
}

# Local execs run under bubblewrap (runtime/src/exec/confine.rs): without it the daemon refuses
# them unless started with --unconfined-exec. Grants of net=outbound reach the outside through
# slirp4netns, with routes set by iproute2's ip (runtime/src/exec/outbound.rs).
install_exec_sandbox() {
    install_if_missing /usr/bin/bwrap bubblewrap
    install_if_missing /usr/bin/slirp4netns slirp4netns
    install_if_missing '/*bin/ip' iproute2
    need bwrap
    need slirp4netns
}
