//! The shell scripts the blueprint runs on a host (`sh -c SCRIPT sh ARGS…`). Each may run
//! twice (the host runs an exec at least once): a second run finds the work done or redoes it.

/// `$1` the copy's directory, `$2` the repository. A directory left by an interrupted clone
/// (no `.git`) is cleared first. A local repository the exec cannot see is named with the grant
/// that would show it (execs see only the host's root and its grant's `ro=` paths).
pub const CLONE: &str = r#"set -e
[ -d "$1/.git" ] && exit 0
case "$2" in /*)
    [ -e "$2" ] || { echo "$2 does not exist or is not visible on this host: execs there see a local repository only if the host's grant lists it with ro= (drydock blueprint grant HOST-BLUEPRINT local:ROOT,ro=$2)" >&2; exit 1; }
esac
rm -rf -- "$1"
mkdir -p -- "$(dirname -- "$1")"
git clone --quiet --no-checkout -- "$2" "$1"
"#;

/// `$1` the copy's directory, `$2` a branch, a tag, a commit, or empty for the remote's default
/// branch. Fetches unless `$2` is a full commit id the copy has, checks it out detached over
/// anything left in the tree, and prints the commit.
pub const CHECKOUT: &str = r#"set -e
cd -- "$1"
if [ "${#2}" -eq 40 ] && git cat-file -e "$2^{commit}" 2>/dev/null; then
    commit=$2
else
    git fetch --quiet --force --tags origin '+refs/heads/*:refs/remotes/origin/*'
    if [ -z "$2" ]; then
        commit=$(git rev-parse --verify --quiet 'refs/remotes/origin/HEAD^{commit}') ||
            { echo "the repository has no default branch" >&2; exit 1; }
    else
        commit=$(git rev-parse --verify --quiet "refs/remotes/origin/$2^{commit}" ||
            git rev-parse --verify --quiet "refs/tags/$2^{commit}" ||
            git rev-parse --verify --quiet "$2^{commit}") ||
            { echo "no branch, tag or commit named $2" >&2; exit 1; }
    fi
fi
git checkout --quiet --force --detach "$commit"
git clean -ffdxq
echo "$commit"
"#;

/// `$1` the copy's directory: back to the checked-out commit, untracked files removed.
pub const CLEAN: &str = r#"set -e
cd -- "$1"
git reset --quiet --hard
git clean -ffdxq
"#;

/// `$1` the copy's directory.
pub const REMOVE: &str = r#"rm -rf -- "$1""#;
